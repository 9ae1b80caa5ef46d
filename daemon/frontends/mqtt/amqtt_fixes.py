"""amqtt 0.12.1, made to behave as MQTT 3.1.1 says (and as mosquitto does).

amqtt as shipped lost messages, leaked retained messages across filters, never enforced
keep-alive and let a client with no login disturb connected ones; users meet each within the first
hour. `ConformingBroker` and its connection handler fix each at the method where amqtt goes wrong,
and each fix names the amqtt behaviour it replaces. tests/daemon/test_broker_conformance.py runs
every case against this broker and against mosquitto.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from amqtt.broker import Broker  # type: ignore[import-untyped]  # amqtt ships no types
from amqtt.errors import AMQTTError, MQTTError, NoDataError  # type: ignore[import-untyped]
from amqtt.mqtt.protocol.broker_handler import (  # type: ignore[import-untyped]
    BrokerProtocolHandler,
)
from amqtt.utils import gen_client_id  # type: ignore[import-untyped]

log = logging.getLogger("tektra.mqtt")

# Set while a SUBSCRIBE is answered: the only moment retained messages are due ([MQTT-3.3.1-6]).
_ANSWERING_SUBSCRIBE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "answering_subscribe", default=False
)


# The QoS of the PUBLISH being fanned out, while amqtt hands it to its broadcast queue.
_PUBLISHED_QOS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "published_qos", default=None
)


class _Broadcast(dict[str, Any]):
    """One message on amqtt's broadcast queue. amqtt delivers it at each subscription's QoS
    (`broadcast.get("qos", subscription_qos)`), so a QoS 0 message went out at QoS 1; MQTT says
    the lower of the two ([MQTT-3.8.4-6]: the published QoS, at most the granted one)."""

    published_qos: int | None = None

    def get(self, key: str, default: Any = None) -> Any:
        if key == "qos" and self.published_qos is not None and default is not None:
            return min(self.published_qos, default)
        return super().get(key, default)


class AckWaiters(dict[int, "asyncio.Future[Any]"]):
    """amqtt registers the waiter for a PUBACK, PUBREC or PUBCOMP only after it wrote what that
    answers; a quick client answers first, amqtt calls the answer unknown, and 5 s later the waiter
    fails with an error (a traceback in the log) for a message that was delivered. Here an answer
    that comes before its waiter is kept for it."""

    def __init__(self) -> None:
        super().__init__()
        self._early: dict[int, asyncio.Future[Any]] = {}

    def __missing__(self, packet_id: int) -> asyncio.Future[Any]:
        # amqtt's handle_puback (and the others) look the waiter up and set its result.
        return self._early.setdefault(packet_id, asyncio.get_running_loop().create_future())

    def __setitem__(self, packet_id: int, waiter: asyncio.Future[Any]) -> None:
        super().__setitem__(packet_id, waiter)
        early = self._early.pop(packet_id, None)
        if early is not None and early.done() and not waiter.done():
            waiter.set_result(early.result())


class _Handler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's per-connection protocol handler, with acknowledgements and keep-alive fixed."""

    @classmethod
    def adopt(cls, handler: Any) -> None:
        """Make a handler amqtt made (before any packet flowed) one of ours."""
        handler.__class__ = cls
        handler._puback_waiters = AckWaiters()
        handler._pubrec_waiters = AckWaiters()
        handler._pubcomp_waiters = AckWaiters()

    def handle_read_timeout(self) -> None:
        # amqtt waits `keep_alive` seconds for a packet, then does nothing: a client that vanished
        # without a FIN (power cut, lost network) stayed connected forever and its last will was
        # never sent. [MQTT-3.1.2-24]: silent for 1.5 x keep-alive, it is disconnected.
        self._closing = asyncio.get_running_loop().create_task(self.handle_connection_closed())


class ConformingBroker(Broker):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's Broker with the fixes below; configured and used exactly as amqtt's."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._closed: dict[int, asyncio.Event] = {}  # id(handler) -> its disconnect was handled

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[Any, Any]:
        # amqtt applies a CONNECT to the broker's sessions before it checks the login: a client
        # with no login could wipe the subscriptions of a connected client (a clean session under
        # its id) or rewrite its last will (a persistent one). And a clean-session CONNECT under a
        # connected id leaves the first connection open ([MQTT-3.1.4-2] says disconnect it).
        # Here the login is checked first, then the first connection is closed, then amqtt's own
        # session rules apply.
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except NoDataError as exc:
            raise AMQTTError(exc) from exc
        except MQTTError:
            await writer.close()
            raise
        _Handler.adopt(handler)
        if not await self._authenticate(session, None):
            handler.attach(session, reader, writer)
            await handler.mqtt_connack_authorize(False)
            await writer.close()
            log.warning(
                "MQTT client %r from %s refused: %s",
                session.client_id,
                remote_address,
                "wrong login"
                if session.username is not None
                else "no login (see tektra mqtt credentials)",
            )
            raise MQTTError("not authorised")
        await self._take_over(session.client_id)
        # amqtt's reader waits `keep_alive` seconds for a packet; the spec allows 1.5 times that.
        session.keep_alive = (session.keep_alive * 3 + 1) // 2
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for name in (
                "will_flag",
                "will_message",
                "will_topic",
                "will_qos",
                "will_retain",
                "keep_alive",
                "username",
                "password",
            ):
                setattr(existing, name, getattr(session, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        return handler, session

    async def _take_over(self, client_id: str) -> None:
        """Close the connection using `client_id`, if any, and wait until amqtt let it go."""
        existing = self._sessions.get(client_id)
        if existing is None or not existing[0].transitions.is_connected():
            return
        closed = self._closed.setdefault(id(existing[1]), asyncio.Event())
        await existing[1].handle_connection_closed()
        try:
            await asyncio.wait_for(closed.wait(), 10)
        except asyncio.TimeoutError:
            log.warning("MQTT client %r: the connection taken over did not close", client_id)

    async def _handle_disconnect(self, session: Any, handler: Any, waiter: Any) -> None:
        try:
            await super()._handle_disconnect(session, handler, waiter)
        finally:
            closed = self._closed.pop(id(handler), None)
            if closed is not None:
                closed.set()

    async def _handle_message_delivery(self, session: Any, handler: Any, delivered: Any) -> bool:
        message = delivered.result()
        token = _PUBLISHED_QOS.set(None if message is None else message.qos)
        try:
            result: bool = await super()._handle_message_delivery(session, handler, delivered)
            return result
        finally:
            _PUBLISHED_QOS.reset(token)

    async def _broadcast_message(
        self, session: Any, topic: Any, data: Any, force_qos: int | None = None
    ) -> None:
        broadcast = _Broadcast(session=session, topic=topic, data=data)
        broadcast.published_qos = force_qos if force_qos is not None else _PUBLISHED_QOS.get()
        await self._broadcast_queue.put(broadcast)

    async def _handle_subscription(self, *args: Any) -> None:
        token = _ANSWERING_SUBSCRIBE.set(True)
        try:
            await super()._handle_subscription(*args)
        finally:
            _ANSWERING_SUBSCRIBE.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        # At every CONNECT amqtt also replays the retained messages of every filter that ANY
        # client subscribed to, so a new client gets `tektra/...` whatever it subscribes to (or
        # nothing). Worse, a publish-and-disconnect client is then written to after it closed;
        # its RST makes asyncio's stream raise before the PUBLISH it sent is read, and the message
        # is lost. Retained messages are due only in answer to a SUBSCRIBE, for its own filter.
        if _ANSWERING_SUBSCRIBE.get():
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _publish_session_retained_messages(self, session: Any) -> None:
        # What a persistent session missed while away is delivered on its return; amqtt sends it
        # with the RETAIN flag set, as if it were a retained message ([MQTT-3.3.1-9]: it is not).
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            sends.append(handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False))
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)
