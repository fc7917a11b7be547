"""``authabuse serve``: run the detector in the mail path as a policy server.

::

    authabuse serve postfix --listen HOST:PORT|unix:PATH [--metrics HOST:PORT]
                            [--abuse-action 'HOLD ...'] [--suspicious-action DUNNO] ...
    authabuse serve dovecot --listen HOST:PORT [--api-header 'X-API-Key: SECRET']
                            [--abuse-status -1] [--suspicious-status N] ...

Common options: ``--store memory|redis://HOST:PORT[/DB]`` (memory: this process's compact
state, with ``--state FILE`` loaded at start when it exists, saved every
``--snapshot-interval`` seconds and on shutdown; redis: the state shared with every
server on that Redis, which also survives this process), ``--geo PATH`` (repeatable),
``--rules FILE``, ``--fail-closed``, ``--control PATH`` (a Unix socket through which
``authabuse state show|benign --control PATH`` reads and changes the running state;
see :mod:`authabuse.cli._control`), connection limits and timeouts. The server runs
until SIGTERM or SIGINT, then saves the state (memory) and exits 0 (1 when that last
save failed, its reason logged). A ``--state`` file whose directory cannot be written,
an address it cannot listen on, or an unreadable ``--api-header-file`` stop it at
start with one line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from authabuse.cli._input import add_detection_arguments, check_writable, seconds

__all__ = ["register"]

log = logging.getLogger("authabuse.serve")


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand (``serve postfix``, ``serve dovecot``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run as a Postfix policy service or a Dovecot auth-policy server",
        description="Judge logins and submissions as they happen and answer the mail "
        "server with the action configured for the account's level.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    pf = kinds.add_parser(
        "postfix",
        help="Postfix SMTP access policy delegation (check_policy_service)",
        description="Postfix policy delegation server; see docs/postfix.md.",
    )
    pf.add_argument("--listen", required=True, metavar="HOST:PORT|unix:PATH")
    pf.add_argument(
        "--metrics", metavar="HOST:PORT", help="also serve GET /metrics and /health here"
    )
    pf.add_argument("--ok-action", default="DUNNO", metavar="ACTION")
    pf.add_argument("--suspicious-action", default="DUNNO", metavar="ACTION")
    pf.add_argument(
        "--abuse-action",
        default="HOLD authabuse: account held for abuse review",
        metavar="ACTION",
        help="e.g. 'REJECT 5.7.1 account blocked', 'DEFER_IF_PERMIT 4.7.1 try later', "
        "'HOLD ...' (default)",
    )
    pf.add_argument(
        "--judge-every-recipient",
        action="store_true",
        help="ask the detector at every RCPT (default: the first RCPT's verdict answers the "
        "message's other recipients; END-OF-MESSAGE judges the whole message again)",
    )
    dc = kinds.add_parser(
        "dovecot",
        help="Dovecot auth policy (auth_policy_server_url)",
        description="Dovecot auth-policy HTTP server; see docs/dovecot.md. GET /metrics "
        "and GET /health are served on the same port.",
    )
    dc.add_argument("--listen", required=True, metavar="HOST:PORT")
    dc.add_argument(
        "--api-header",
        metavar="'NAME: VALUE'",
        help="require this header, as Dovecot's auth_policy_server_api_header sends it "
        "('Name: value', or a bare value sent as X-API-Key)",
    )
    dc.add_argument(
        "--api-header-file",
        metavar="FILE",
        help="read --api-header from FILE (keeps the secret out of the process list)",
    )
    dc.add_argument(
        "--suspicious-status",
        type=int,
        default=0,
        metavar="N",
        help="0 accept (default), N>0 tarpit N seconds, -1 reject",
    )
    dc.add_argument("--abuse-status", type=int, default=-1, metavar="N")
    dc.add_argument("--reject-message", default="authentication refused by policy")
    for sub in (pf, dc):
        _common(sub)
        sub.set_defaults(func=_run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        default="memory",
        metavar="memory|redis://HOST:PORT/DB",
        help="where the detector's state lives: this process (default) or a Redis shared "
        "by every server (redis://HOST:PORT/DB, rediss://..., unix:///path.sock?db=N)",
    )
    p.add_argument(
        "--store-prefix",
        default="authabuse:",
        metavar="PREFIX",
        help="Redis key prefix (servers sharing state use the same; default authabuse:)",
    )
    p.add_argument(
        "--store-timeout",
        type=seconds(zero=False),
        default=0.25,
        metavar="SECONDS",
        help="bound on each Redis call; past it the server answers from local state (default 0.25)",
    )
    p.add_argument("--state", metavar="FILE", help="detector state snapshot file")
    p.add_argument(
        "--control",
        metavar="PATH",
        help="Unix socket (mode 0600) on which `authabuse state show|benign --control PATH` "
        "reads and changes this server's state while it runs",
    )
    p.add_argument(
        "--snapshot-interval",
        type=seconds(zero=True),
        default=300.0,
        metavar="SECONDS",
        help="save --state this often (default 300; 0: only at shutdown)",
    )
    add_detection_arguments(p, min_level=False)
    p.add_argument(
        "--fail-closed",
        action="store_true",
        help="on an internal error answer DEFER_IF_PERMIT 4.3.0 / status -1 instead of "
        "letting the request through",
    )
    p.add_argument("--max-connections", type=int, default=1000, metavar="N")
    p.add_argument("--request-timeout", type=seconds(zero=False), default=10.0, metavar="SECONDS")
    p.add_argument(
        "--idle-timeout",
        type=seconds(zero=False),
        default=None,
        metavar="SECONDS",
        help="close kept-alive connections idle this long (postfix 330, dovecot 120)",
    )
    p.add_argument("--server-name", metavar="NAME", help="server name put in events")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def _build_detector(args: argparse.Namespace) -> tuple[Any, Any]:
    from authabuse.detector import Detector, DetectorConfig
    from authabuse.errors import ConfigurationError
    from authabuse.geo import resolver_from_paths
    from authabuse.rules import load_rules

    rules = load_rules(args.rules) if args.rules else None
    geo = resolver_from_paths(args.geo)  # no --geo: the embedded default data
    store: Any = None
    if args.store != "memory":
        if not args.store.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"--store must be memory or a redis:// URL, not {args.store!r}"
            )
        from authabuse.redis_store import RedisStore

        if args.state:
            raise ConfigurationError(
                "--state and --store redis:// exclude each other (Redis holds the state)"
            )
        # Two long windows of history: what the detector reads (see docs/redis.md).
        store = RedisStore(
            args.store,
            prefix=args.store_prefix,
            retention=2 * DetectorConfig().long_window,
            socket_timeout=args.store_timeout,
        )
        log.info("detector state shared in Redis at %s (prefix %r)", store.url, store.prefix)
    # Saved while serving and at shutdown: refuse now a file that could not be written.
    state = check_writable(args.state, "state file") if args.state else None
    if state is not None and state.exists():
        detector = Detector.load(state, rules=rules, geo=geo)
        log.info("state loaded from %s (%d accounts)", state, len(detector))
    else:
        kwargs: dict[str, Any] = {"rules": rules, "geo": geo}
        if store is not None:
            kwargs["store"] = store
        detector = Detector(**kwargs)
    return detector, store


def _run(args: argparse.Namespace) -> int:
    from authabuse.servers import (
        DovecotAnswers,
        DovecotPolicyServer,
        Limits,
        PostfixAnswers,
        PostfixPolicyServer,
    )

    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    detector, store = _build_detector(args)
    idle = args.idle_timeout or (330.0 if args.kind == "postfix" else 120.0)
    limits = Limits(
        max_connections=args.max_connections,
        request_timeout=args.request_timeout,
        idle_timeout=idle,
    )
    server: Any
    if args.kind == "postfix":
        answers = PostfixAnswers(
            ok=args.ok_action,
            suspicious=args.suspicious_action,
            abuse=args.abuse_action,
            fail=PostfixAnswers.FAIL_CLOSED if args.fail_closed else "DUNNO",
        )
        server = PostfixPolicyServer(
            detector,
            answers=answers,
            limits=limits,
            server_name=args.server_name,
            verdict_per_message=not args.judge_every_recipient,
        )
    else:
        api = _api_header(args)
        dc_answers = DovecotAnswers(
            suspicious=args.suspicious_status,
            abuse=args.abuse_status,
            fail=-1 if args.fail_closed else 0,
            message=args.reject_message,
        )
        server = DovecotPolicyServer(
            detector,
            answers=dc_answers,
            limits=limits,
            api_header=api,
            server_name=args.server_name,
        )
    _register_gauges(server, detector, store)
    state = Path(args.state) if args.state else None

    async def main() -> None:
        # Handlers first: a SIGTERM right after "listening on" must still save the state.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, _reload, detector, args)
        control = await _open_control(detector, args)
        try:
            await _listen(server, args)
        except BaseException:
            if control is not None:
                await control.close()
            raise
        snapshots = snapshotter = None
        if state is not None and args.snapshot_interval > 0:
            snapshotter = _Snapshotter(detector, state, args.snapshot_interval)
            snapshots = asyncio.create_task(snapshotter.run())
        await stop.wait()
        log.info("shutting down")
        if control is not None:
            await control.close()
        if snapshots is not None and snapshotter is not None:
            snapshots.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await snapshots
            snapshotter.reap(block=True)  # the final save below must be the last writer
        await server.stop()

    asyncio.run(main())
    code = 0 if state is None else _final_save(detector, state)
    if store is not None:
        store.close()
    return code


async def _open_control(detector: Any, args: argparse.Namespace) -> Any:
    """Open ``--control``'s socket on the loop (``None`` without it)."""
    if not args.control:
        return None
    from authabuse.cli._control import serve_control

    control = await serve_control(detector, args.control)
    print(
        f"authabuse serve {args.kind}: control socket at {args.control}",
        file=sys.stderr,
        flush=True,
    )
    return control


async def _listen(server: Any, args: argparse.Namespace) -> None:
    """Open the policy listener (and ``--metrics``'s), announce them on stderr."""
    from authabuse.errors import ConfigurationError
    from authabuse.servers import serve_metrics
    from authabuse.servers._http import HttpConnection

    try:
        bound = await server.start(args.listen)
    except OSError as exc:  # a port taken, an address not here, a missing directory
        raise ConfigurationError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    # Modules, geo tables, rules: what is alive now lives as long as the process.
    # Frozen, the cyclic GC's full collections no longer walk it (10-25 ms each,
    # every few seconds under load: the latency tail), only what came later.
    gc.collect()
    gc.freeze()
    where = ", ".join(_fmt(b) for b in bound)
    print(f"authabuse serve {args.kind}: listening on {where}", file=sys.stderr, flush=True)
    if getattr(args, "metrics", None):
        try:
            maddr = await server.add_listener(
                args.metrics, lambda: HttpConnection(server, serve_metrics(server), 0)
            )
        except OSError as exc:
            await server.stop()
            raise ConfigurationError(
                f"cannot listen on {args.metrics} (--metrics): {exc.strerror or exc}"
            ) from None
        print(
            f"authabuse serve {args.kind}: metrics on {_fmt(maddr)}",
            file=sys.stderr,
            flush=True,
        )


def _api_header(args: argparse.Namespace) -> str | None:
    """Return the Dovecot API header: ``--api-header``, or ``--api-header-file``'s content."""
    from authabuse.errors import ConfigurationError

    if not args.api_header_file:
        return args.api_header  # type: ignore[no-any-return]  # argparse's str | None
    try:
        return Path(args.api_header_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigurationError(
            f"cannot read --api-header-file {args.api_header_file}: {reason}"
        ) from None


def _reload(detector: Any, args: argparse.Namespace) -> bool:
    """Re-read ``--rules`` and ``--geo`` (on SIGHUP); on any error keep what runs now."""
    from authabuse.errors import AuthAbuseError
    from authabuse.geo import resolver_from_paths
    from authabuse.rules import load_rules

    started = time.monotonic()
    try:
        rules = load_rules(args.rules) if args.rules else None
        geo = resolver_from_paths(args.geo) if args.geo else None  # embedded data: as is
        detector.reload(rules=rules, geo=geo)
    except (OSError, AuthAbuseError) as exc:
        log.error("reload refused, the running rules and geo data stay: %s", exc)
        return False
    log.info(
        "reloaded %s%s in %.0f ms; what the detector learned is kept",
        f"{len(detector.rules.rules)} rules from {args.rules}" if args.rules else "no rules file",
        f", geo data from {', '.join(args.geo)}" if args.geo else "",
        (time.monotonic() - started) * 1000,
    )
    return True


def _fmt(addr: Any) -> str:
    if isinstance(addr, tuple):
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else addr[0]
        return f"{host}:{addr[1]}"
    return f"unix:{addr}"


def _final_save(detector: Any, state: Path) -> int:
    """Save the state at shutdown; 1 (and the reason logged) when the system refused."""
    try:
        _save(detector, state)
    except OSError as exc:
        log.error("cannot save state to %s: %s", state, exc.strerror or exc)
        return 1
    return 0


def _save(detector: Any, state: Path) -> None:
    started = time.perf_counter()
    detector.save(state)
    log.info(
        "state saved to %s (%d accounts, %.3f s)",
        state,
        len(detector),
        time.perf_counter() - started,
    )


class _Snapshotter:
    """Periodic state snapshots that do not stop the server from answering.

    Serializing a large detector takes seconds, longer than Dovecot waits (2 s). Like
    Redis's BGSAVE, each snapshot forks: the child writes the copy-on-write image of
    the state (``Detector.save``: temporary file, fsync, rename) and exits, while the
    parent keeps answering. Where ``fork`` does not exist the save runs in the loop.
    """

    def __init__(self, detector: Any, state: Path, interval: float) -> None:
        self.detector, self.state, self.interval = detector, state, interval
        self.child: int | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.reap(block=False):
                log.warning("previous snapshot still being written: skipping this one")
                continue
            if not hasattr(os, "fork"):
                try:
                    _save(self.detector, self.state)
                except OSError as exc:
                    log.error("cannot save state to %s: %s", self.state, exc)
                continue
            pid = os.fork()
            if pid == 0:  # the child: write the snapshot and leave, touching nothing else
                # Drop the inherited sockets at once, so a connection the parent closes
                # is really closed (stdin/stdout/stderr stay for the error message).
                os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
                code = 0
                try:
                    self.detector.save(self.state)
                except BaseException as exc:  # reported through the exit code
                    os.write(2, f"authabuse: snapshot failed: {exc}\n".encode(errors="replace"))
                    code = 1
                os._exit(code)
            self.child = pid

    def reap(self, *, block: bool) -> bool:
        """Collect a finished snapshot child; False while one is still running."""
        if self.child is None:
            return True
        pid, status = os.waitpid(self.child, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.child = None
        if os.waitstatus_to_exitcode(status) != 0:
            log.error("snapshot of the state to %s failed", self.state)
        else:
            log.debug("snapshot written to %s", self.state)
        return True


def _register_gauges(server: Any, detector: Any, store: Any) -> None:
    metrics = server.metrics

    def usage(field: str) -> float:
        return float(detector.memory_usage()[field])

    metrics.gauge(
        "authabuse_detector_memory_bytes",
        "Bytes held by the detector's state in this process",
        lambda: usage("bytes"),
    )
    if store is not None:
        metrics.gauge(
            "authabuse_store_memory_bytes",
            "Bytes the shared store uses (Redis used_memory, plus the local fallback)",
            lambda: usage("store_bytes"),
        )
        _register_store_gauges(metrics, store)
    else:
        _register_compact_gauges(metrics, usage)


def _register_compact_gauges(metrics: Any, usage: Any) -> None:
    metrics.gauge(
        "authabuse_detector_accounts", "Accounts the detector keeps", lambda: usage("accounts")
    )
    metrics.gauge(
        "authabuse_detector_ips", "Source addresses the detector keeps", lambda: usage("ips")
    )


def _register_store_gauges(metrics: Any, store: Any) -> None:
    metrics.gauge(
        "authabuse_store_degraded",
        "1 while the shared store is unreachable and local state answers",
        lambda: float(store.status["degraded"]),
    )
    metrics.gauge(
        "authabuse_store_fallbacks",
        "Times the shared store became unreachable",
        lambda: float(store.status["fallbacks"]),
    )
    metrics.gauge(
        "authabuse_store_errors",
        "Shared-store calls that failed",
        lambda: float(store.status["errors"]),
    )
