#!/usr/bin/env python3
"""Where a checkout's time goes on meshwa, per hop: the difference of two scrapes of a server
started with `meshwa serve --explain`, divided by the invocations of each function in between.

Usage: explain.py BEFORE.prom AFTER.prom REQUESTS LABEL [PROCESS_FAULTS]
  BEFORE/AFTER: the admin listener's /metrics before and after a load run;
  REQUESTS: checkouts answered in between (for the whole-request line);
  PROCESS_FAULTS: minor page faults of the server process over the run (from /proc), if known.
Prints a Markdown table: one row per function that ran (µs per invocation), and a line for the
whole request (µs per checkout, all hops together).
"""
import re
import sys
from collections import defaultdict

SAMPLE = re.compile(r'^meshwa_phase_(seconds|events)_total\{([^}]*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')
TIMES = ["admission", "instantiate", "guest", "key_value", "calls", "other_host", "teardown"]
EVENTS = ["invocations", "key_value_calls", "host_calls", "instantiate_faults", "teardown_faults"]


def scrape(path):
    values = defaultdict(float)
    with open(path) as text:
        for line in text:
            match = SAMPLE.match(line.strip())
            if not match:
                continue
            labels = dict(LABEL.findall(match.group(2)))
            # Apps of one server may have functions of the same name: name them app/function.
            function = f'{labels["app"]}/{labels["function"]}'
            values[(function, labels["phase"])] = float(match.group(3))
    return values


def main():
    before, after = scrape(sys.argv[1]), scrape(sys.argv[2])
    requests, label = int(sys.argv[3]), sys.argv[4]
    process_faults = float(sys.argv[5]) if len(sys.argv) > 5 else None
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    # Only the functions that ran in between: the deployment measured.
    functions = sorted({f for (f, _) in delta if delta.get((f, "invocations"), 0) > 0},
                       key=lambda f: -delta[(f, "invocations")])
    print(f"{label}: {requests} checkouts; µs per invocation of each function "
          "(hops: invocations per checkout)")
    print()
    print("| function | hops | admission | instantiate | guest | key-value (calls) | "
          "waiting for callees | other host (host calls) | teardown | total | faults (inst. + teardown) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    whole = defaultdict(float)
    for function in functions:
        n = delta[(function, "invocations")]
        us = {phase: delta.get((function, phase), 0.0) * 1e6 / n for phase in TIMES}
        for phase in TIMES:
            whole[phase] += delta.get((function, phase), 0.0) * 1e6 / requests
        for event in EVENTS[1:]:
            whole[event] += delta.get((function, event), 0.0) / requests
        calls = delta.get((function, "key_value_calls"), 0.0) / n
        host_calls = delta.get((function, "host_calls"), 0.0) / n
        faults = (delta.get((function, "instantiate_faults"), 0.0)
                  + delta.get((function, "teardown_faults"), 0.0)) / n
        total = sum(us.values())
        print(f"| {function} | {n / requests:.2f} | {us['admission']:.1f} | {us['instantiate']:.1f} "
              f"| {us['guest']:.1f} | {us['key_value']:.1f} ({calls:.0f}) | {us['calls']:.1f} "
              f"| {us['other_host']:.1f} ({host_calls:.0f}) | {us['teardown']:.1f} | {total:.1f} "
              f"| {faults:.1f} |")
    # The whole request: time spent in every hop's own steps (waiting for callees excluded, as
    # that time is the callees' own), which is the checkout's CPU-relevant work on meshwa.
    own = sum(whole[phase] for phase in TIMES if phase != "calls")
    faults = whole["instantiate_faults"] + whole["teardown_faults"]
    print(f"| **whole checkout** (own time of every hop) | | {whole['admission']:.1f} "
          f"| {whole['instantiate']:.1f} | {whole['guest']:.1f} "
          f"| {whole['key_value']:.1f} ({whole['key_value_calls']:.0f}) | | "
          f"{whole['other_host']:.1f} ({whole['host_calls']:.0f}) | {whole['teardown']:.1f} | {own:.1f} "
          f"| {faults:.1f} |")
    if process_faults is not None:
        print()
        print(f"minor page faults of the whole server process: {process_faults / requests:.1f} "
              "per checkout")
    print()


if __name__ == "__main__":
    main()
