"""The `tektra` command.

`ask`, `models` and `validate` work in-process for now; they move onto the daemon's socket once
the daemon serves one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from daemon.backends.registry import BackendRegistry
from daemon.config.load import check_file, default_config_path, load_config
from daemon.config.schema import TektraConfig
from daemon.errors import ConfigError, TektraError
from daemon.manager.manager import ModelInfo, Query, UnifiedModelManager


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path: Path = args.config or default_config_path()
    try:
        if args.command == "validate":
            return _validate(path)
        config = load_config(path, BackendRegistry().names())
        if args.command == "run":
            from daemon.service import run

            return run(config, path)
        if args.command == "ask":
            return asyncio.run(_ask(config, path, args))
        if args.command == "models":
            return _models(config, path, args)
    except ConfigError as exc:
        print(f"{path}: {len(exc.issues)} error(s)", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    except TektraError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tektra", description="Local voice and vision assistant")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="models.toml to use (default: $TEKTRA_CONFIG, "
        "./models.toml, ~/.config/tektra/models.toml, /etc/tektra/models.toml)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    ask = sub.add_parser("ask", parents=[common], help="ask a question; the answer streams out")
    ask.add_argument("text", help="the question")
    ask.add_argument("--model", help="model id (default: [daemon].default_model)")
    ask.add_argument("--preset", help="generation preset (fast, balanced, quality, creative, …)")
    models = sub.add_parser("models", parents=[common], help="list models, or pull one")
    models.add_argument("action", nargs="?", choices=["list", "pull"], default="list")
    models.add_argument("model_id", nargs="?", help="model to pull (an hf source)")
    sub.add_parser("validate", parents=[common], help="check models.toml and list every error")
    return parser


def _validate(path: Path) -> int:
    _config, issues = check_file(path, BackendRegistry().names())
    if issues:
        print(f"{path}: {len(issues)} error(s)")
        for issue in issues:
            print(f"  {issue}")
        return 1
    print(f"{path}: OK")
    return 0


async def _ask(config: TektraConfig, path: Path, args: argparse.Namespace) -> int:
    manager = UnifiedModelManager(config, config_path=path)
    try:
        answer = manager.answer(Query(args.text, model=args.model, preset=args.preset))
        async for chunk in answer:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
    finally:
        await manager.close()
    return 0


def _models(config: TektraConfig, path: Path, args: argparse.Namespace) -> int:
    if args.action == "pull":
        from daemon import model_sources

        if not args.model_id:
            print("usage: tektra models pull MODEL_ID", file=sys.stderr)
            return 2
        model = config.model(args.model_id)
        if model is None:
            print(f"error: no model with id '{args.model_id}'", file=sys.stderr)
            return 1
        print(model_sources.pull(model.id, model.source))
        return 0
    manager = UnifiedModelManager(config, config_path=path)
    print(_table(manager.list_models()))
    return 0


def _table(models: list[ModelInfo]) -> str:
    rows = [("ID", "BACKEND", "CAPABILITIES", "LOADED", "MEMORY", "STATUS")]
    for m in models:
        memory = f"{m.memory_mb} MB" if m.memory_mb is not None else "?"
        status = m.problem or "ready"
        rows.append(
            (
                m.id,
                m.backend or "-",
                ",".join(m.capabilities),
                "yes" if m.loaded else "no",
                memory,
                status,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


if __name__ == "__main__":
    sys.exit(main())
