#!/usr/bin/env python3
"""Partitions a server profile into the request path's parts.

Usage: perf script -i perf.data -F comm,tid,ip,sym --no-inline | scripts/bench/attribute.py
(the writer thread is told by its name, kmsd-audit, as its frames are inlined into std's)

Every sample is attributed to the first category of the list below that one of its frames
matches (so the rows partition the samples, and kernel work counts under the function that
caused it); a category with a third element also needs a frame matching that. Prints
`share  category` lines, largest first, and the samples' total.
"""

import collections
import sys

# (category, substrings of a frame's symbol[, substring another frame must hold]), in priority
# order: specific parts first, the handler and hyper as a whole last.
CATEGORIES = [
    ("audit writer: fdatasync", ["sync_data", "fdatasync"]),
    ("audit writer: append (splice, SHA-256, write)", ["AuditFileSet::append"]),
    ("audit writer: checkpoint/housekeeping", ["Worker::housekeeping", "maybe_checkpoint"]),
    ("audit request path: record built/serialised", ["ApiCallRecord::to_json", "AuditLine::from_serialize", "AuditLine::from_value", "<kms_audit::record::ApiCallRecord as serde::ser::Serialize>"]),
    ("audit request path: requestParameters (parse + redact)", ["redact_request"]),
    ("audit request path: queue + wait", ["AuditWriter::record"]),
    ("change hint (sync_changes)", ["sync_changes_async", "change_hint"]),
    ("SigV4: header parse", ["parse_authorization", "kmsd::auth::authorization"]),
    ("SigV4: verify (canonical request, HMACs)", ["kms_sigv4::verify"]),
    ("SigV4: rest of authenticate (date, key lookup)", ["kmsd::auth::authenticate"]),
    ("quotas", ["quota_charges", "Quotas::admit"]),
    ("key lookup (resolve_cached)", ["Service::resolve_cached"]),
    ("seal (AES-GCM, IV)", ["Service>::seal"]),
    ("dispatch: rest (parse, authorize, response JSON)", ["Service>::dispatch", "Service::dispatch"]),
    ("header_pairs", ["header_pairs"]),
    ("respond (headers, date)", ["kmsd::server::respond"]),
    ("request id / event id (uuid)", ["uuid::v4", "Uuid::new_v4"]),
    ("metrics", ["Metrics::observe"]),
    ("key usage record", ["record_key_usage"]),
    ("body read", ["kms_serve::body::read_body", "read_request_body"]),
    ("rest of handler", ["kmsd::server::handle_read", "kmsd::server::handle"]),
    ("audit writer: rest (channel, wake-ups, freeing)", ["kms_audit::writer", "kmsd-audit"]),
    ("hyper: read + parse request", ["poll_read_head", "poll_read"]),
    ("hyper: write + flush response", ["poll_flush", "poll_write"]),
    ("tokio scheduler / other", [""]),
]


def frames(stream):
    """Yields each sample's frames, leaf first, the thread name (comm) as the last frame."""
    current = []
    comm = ""
    for line in stream:
        if not line.strip():
            if current:
                yield current + [comm]
            current = []
            continue
        if line.startswith((" ", "\t")):
            parts = line.strip().split(" ", 1)
            current.append(parts[1] if len(parts) > 1 else parts[0])
        else:
            comm = line.split(" ", 1)[0]
    if current:
        yield current + [comm]


def main():
    counts = collections.Counter()
    total = 0
    for stack in frames(sys.stdin):
        total += 1
        chosen = None
        for category in CATEGORIES[:-1]:
            name, patterns = category[0], category[1]
            needs = category[2] if len(category) > 2 else None
            if any(p in f for f in stack for p in patterns) and (
                needs is None or any(needs in f for f in stack)
            ):
                chosen = name
                break
        counts[chosen or CATEGORIES[-1][0]] += 1
    for name, n in counts.most_common():
        print(f"{100.0 * n / max(total, 1):6.1f}%  {name}")
    print(f"{total} samples")


if __name__ == "__main__":
    main()
