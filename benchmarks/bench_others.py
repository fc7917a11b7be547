"""Parsing speed of the other servers' lines (OpenSMTPD, Courier, Cyrus, Roundcube, nginx).

Generates a log in the shapes of the real lines (``tests/data``, ``../shared/corpus``):
OpenSMTPD 6.4+ sessions (connect, login or failure with its 535 reply, a message with
1-3 envelope lines, disconnect), Courier IMAP/POP3 logins and failures, Cyrus badlogin
lines, Roundcube journal failures and nginx mail-proxy failures, with botnet-like
addresses and account names. In one run, interleaved, it measures:

(a) a bare pass: read each line and apply one compiled regex (the syslog envelope);
(b) full parsing of that log with :func:`authabuse.parsers.iter_events`;
(c) full parsing of the same number of Postfix lines (``bench_parse``'s generator).

Reported: CPU microseconds per line (best run) and the ratios (b)/(a) and (b)/(c), so the
other servers' cost is read against the Postfix path it shares the machine with.

    python benchmarks/bench_others.py [--lines 300000] [--repeat 3] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, update_results  # benchmarks are scripts
from bench_parse import bare_text_pass, full_parse
from bench_parse import generate as generate_postfix

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _stamp(t: int) -> str:
    day, rest = divmod(t, 86400)
    clock = f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    return f"{_MONTHS[day // 28 % 12]} {day % 28 + 1:2d} {clock}"


def _ip(rng: random.Random) -> str:
    return (
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )


def generate(path: Path, lines: int, seed: int = 1) -> int:
    """Write about ``lines`` lines of the other servers' logs to ``path``; return the count."""
    rng = random.Random(seed)
    users = [f"user{i}@example.org" for i in range(5000)]
    out: list[str] = []
    t = 0
    while len(out) < lines:
        t += rng.randrange(0, 2)
        s = _stamp(t)
        kind = rng.random()
        ip, user = _ip(rng), rng.choice(users)
        if kind < 0.4:  # an OpenSMTPD session
            sid = f"{rng.getrandbits(64):016x}"
            pre = f"{s} mx smtpd[{rng.randrange(1000, 9999)}]: {sid} smtp "
            out.append(pre + f"connected address={ip} host=<unknown>")
            if rng.random() < 0.7:
                out.append(pre + f"authentication user={user} result=permfail")
                out.append(
                    pre
                    + 'failed-command command="AUTH PLAIN (...)" result="535 Authentication failed"'
                )
            else:
                msgid = f"{rng.getrandbits(32):08x}"
                n = rng.randrange(1, 4)
                out.append(pre + f"authentication user={user} result=ok")
                out.append(
                    pre
                    + f"message msgid={msgid} size={rng.randrange(300, 90000)} nrcpt={n} "
                    + "proto=ESMTP"
                )
                out.extend(
                    pre + f"envelope evpid={msgid}{rng.getrandbits(32):08x} from=<{user}> "
                    f"to=<r{r}@example.com>"
                    for r in range(n)
                )
            out.append(pre + "disconnected reason=quit")
        elif kind < 0.6:
            verdict = "LOGIN FAILED" if rng.random() < 0.7 else "LOGIN"
            prog = rng.choice(("imapd", "pop3d", "imapd-ssl"))
            out.append(
                f"{s} mail {prog}: {verdict}, user={user}, ip=[::ffff:{ip}], port=[4242], "
                "protocol=IMAP"
            )
        elif kind < 0.75:
            out.append(
                f"{s} mail cyrus/imaps[{rng.randrange(1000, 9999)}]: badlogin: host.example [{ip}] "
                f"plaintext {user} SASL(-13): authentication failure: checkpass failed"
            )
        elif kind < 0.9:
            out.append(
                f"{s} web roundcube[{rng.randrange(1000, 9999)}]: <crk9n97i> IMAP Error: Login "
                "failed "
                f"for {user} from {ip}. AUTHENTICATE PLAIN: Authentication failed. in "
                "/usr/share/roundcube/program/lib/Roundcube/rcube_imap.php on line 200 "
                "(POST /?_task=login&_action=login)"
            )
        else:
            out.append(
                f"2022/04/06 {t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d} [info] 8#8: "
                f'*{t} client login failed: "Authentication credentials invalid" while in http '
                f'auth state, client: {ip}, server: 0.0.0.0:587, login: "{user}"'
            )
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return len(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-record", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_others.") as tmp:
        others = Path(tmp) / "others.log"
        n = generate(others, args.lines)
        postfix = Path(tmp) / "postfix.log"
        n_postfix = generate_postfix(postfix, n)
        passes: dict[str, Callable[[], int]] = {
            "bare": lambda: bare_text_pass(others),
            "others": lambda: full_parse(others),
            "postfix": lambda: full_parse(postfix),
        }
        cpu: dict[str, list[float]] = {k: [] for k in passes}
        events: dict[str, int] = {}
        load_before = os.getloadavg()
        for _ in range(args.repeat):  # interleaved: every pass sees the same machine load
            for key, run in passes.items():
                c0 = time.process_time()
                events[key] = run()
                cpu[key].append(time.process_time() - c0)
        load_after = os.getloadavg()
    lines = {"bare": n, "others": n, "postfix": n_postfix}
    us = {k: min(v) / lines[k] * 1e6 for k, v in cpu.items()}
    med = {k: statistics.median(v) / lines[k] * 1e6 for k, v in cpu.items()}
    load = (
        f"load average (1/5/15 min) {' / '.join(f'{x:.1f}' for x in load_before)} before, "
        f"{' / '.join(f'{x:.1f}' for x in load_after)} after"
    )
    print(load)
    for key in passes:
        print(f"{key:8s} {us[key]:.3f} us/line best, {med[key]:.3f} median ({events[key]} results)")
    ratio_bare = med["others"] / med["bare"]
    ratio_postfix = med["others"] / med["postfix"]
    print(f"others / bare {ratio_bare:.2f}, others / postfix {ratio_postfix:.2f}")
    if args.no_record:
        return
    md = f"""## bench_others: the other servers' lines (`python benchmarks/bench_others.py`)

{machine_line()} {load}. {n} generated lines in the shapes of the real OpenSMTPD, Courier,
Cyrus, Roundcube and nginx-mail lines ({events["others"]} events), against a bare
one-regex pass over them and full parsing of {n_postfix} Postfix lines (`bench_parse`'s
generator), interleaved, {args.repeat} runs, CPU time.

| pass | CPU us/line (median) | best |
|---|---|---|
| bare one-regex pass | {med["bare"]:.3f} | {us["bare"]:.3f} |
| other servers, full parse | {med["others"]:.3f} | {us["others"]:.3f} |
| Postfix, full parse | {med["postfix"]:.3f} | {us["postfix"]:.3f} |

Other servers / bare pass: {ratio_bare:.2f}; other servers / Postfix: {ratio_postfix:.2f}.
"""
    update_results("bench_others", md)


if __name__ == "__main__":
    main()
