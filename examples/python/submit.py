#!/usr/bin/env python3
"""Submits one document to pagestream over NATS JetStream and prints its result.

A client written from schemas/WIRE.md alone, with nats-py and msgpack: it
shares no code with the Rust workers. What it does, step by step:

 1. reads the file and computes the document id, the hex sha256 of its bytes;
 2. subscribes to the result subject ``pagestream.<tenant>.results.<doc_id>``
    *before* publishing, so a result published at any moment after the
    submission cannot be missed;
 3. publishes the ``document_submission`` envelope (the bytes inline, as
    MessagePack ``bin``) to ``pagestream.<tenant>.submit`` through JetStream,
    with the headers WIRE.md lists, and waits for the stream's PubAck;
 4. waits for the ``document_result`` of this submission (``--timeout``),
    checks the envelope's ``v`` and ``kind``, and prints the result as JSON
    (or, with ``--summary``, one line per page). A result too large for a
    message arrives as a claim check (``full_result``: a reference into the
    object store); the whole result is read from there, checked against its
    size and sha256 (``file://`` stores, or ``--store`` for a local copy).

The same bytes submitted again within the DOCS stream's duplicate window
(2 minutes by default) are dropped by the stream as a duplicate (the PubAck
says so) and no new result is published. The result of the earlier
submission is then read back from the results stream PAGESTREAM_RESULTS:
the last message on the result subject, by a JetStream direct get
(``$JS.API.DIRECT.GET.PAGESTREAM_RESULTS.<result subject>``, whose subject
names the tenant, so NATS permissions can confine a tenant to its own
results). A results stream created without ``allow_direct`` leaves direct
gets unanswered; after that timeout the client uses the regular message get
(``$JS.API.STREAM.MSG.GET.PAGESTREAM_RESULTS``). While the earlier
submission is still being analysed nothing is stored yet, and the
subscription delivers the result when it is published.

Exit codes: 0 the document is complete, 1 the document failed or some of
its pages did (status ``failed`` or ``partial``; the result is printed all
the same), 2 usage (bad arguments, unreadable or too large file), 3 no
result within ``--timeout`` (the document id is printed), 4 NATS errors
(cannot connect, publish refused, a result that does not decode or whose
claim check cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time

import msgpack
import nats
import nats.errors
import nats.js.errors

# What schemas/WIRE.md defines; the Rust spelling lives in schemas::subjects.
SCHEMA_VERSION = 1
PREFIX = "pagestream"
RESULTS_STREAM = "PAGESTREAM_RESULTS"
TENANT_RE = re.compile(r"[a-z0-9_-]{1,64}")

EXIT_COMPLETE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_NATS = 4


class Failure(Exception):
    """An error that ends the program with `code` after printing `message`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_submission(tenant: str, data: bytes, file_name: str | None, submitted_at_ms: int) -> tuple[str, bytes]:
    """The document id and the MessagePack envelope of a DocumentSubmission (WIRE.md)."""
    doc_id = hashlib.sha256(data).hexdigest()
    envelope = {
        "v": SCHEMA_VERSION,
        "kind": "document_submission",
        "body": {
            "doc_id": doc_id,
            "tenant": tenant,
            "file_name": file_name,
            "source": {"type": "inline", "bytes": data},  # bytes are packed as bin
            "submitted_at_ms": submitted_at_ms,
        },
    }
    return doc_id, msgpack.packb(envelope)


def decode_result(payload: bytes) -> dict:
    """The DocumentResult of an envelope; checks `v` and `kind` as WIRE.md asks."""
    try:
        envelope = msgpack.unpackb(payload)
    except Exception as error:  # msgpack raises several types for bad input
        raise Failure(EXIT_NATS, f"the result is not MessagePack: {error}") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("body"), dict):
        raise Failure(EXIT_NATS, "the result is not an envelope {v, kind, body}")
    version, kind = envelope.get("v"), envelope.get("kind")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Failure(EXIT_NATS, f"the result envelope has no valid schema version: v = {version!r}")
    if version > SCHEMA_VERSION:
        raise Failure(EXIT_NATS, f"the result has schema version {version}, this client reads up to {SCHEMA_VERSION}")
    if kind != "document_result":
        raise Failure(EXIT_NATS, f"expected a document_result, got kind {kind!r}")
    return envelope["body"]


def full_result(result: dict, store: str | None) -> dict:
    """The complete result a result message stands for (WIRE.md, "Claim checks").

    A result too large for a message carries ``full_result``, a BlobRef to the
    complete ``document_result`` envelope in the object store; its key lies
    under ``results/<tenant>/<doc_id>/``. ``store`` replaces the reference's
    own store URL (a local copy or mount of the same store).
    """
    blob = result.get("full_result")
    if not blob:
        return result
    tenant, doc_id = result.get("tenant"), result.get("doc_id")
    key = blob.get("key") or ""
    prefix = f"results/{tenant}/{doc_id}/"
    rest = key[len(prefix) :].split("/") if key.startswith(prefix) else [""]
    if any(part in ("", ".", "..") for part in rest):
        raise Failure(EXIT_NATS, f"the result's claim check {key!r} lies outside {prefix}")
    url = store or blob.get("store") or ""
    if not url.startswith("file://"):
        raise Failure(
            EXIT_NATS,
            f"the result of {doc_id} is stored at {url} under {key} ({blob.get('size')} bytes,"
            f" sha256 {blob.get('sha256')}): this client reads file:// stores; pass --store file://DIR"
            " with a local copy, or read it with your object store's client",
        )
    path = os.path.join(url[len("file://") :], key)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise Failure(EXIT_NATS, f"cannot read the stored result {path}: {error.strerror}") from None
    if len(data) != blob.get("size") or hashlib.sha256(data).hexdigest() != blob.get("sha256"):
        raise Failure(EXIT_NATS, f"the stored result {path} does not match its size and sha256")
    full = decode_result(data)
    if (full.get("doc_id"), full.get("tenant"), full.get("submitted_at_ms")) != (
        doc_id,
        tenant,
        result.get("submitted_at_ms"),
    ) or full.get("full_result"):
        raise Failure(EXIT_NATS, f"the stored result {path} belongs to another document or run")
    return full


def json_default(value: object) -> object:
    """JSON for what MessagePack has and JSON lacks (bin: as hex)."""
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def summary_lines(result: dict, width: int = 60) -> list[str]:
    """One line for the document, one per page: status and the start of the text."""
    lines = [
        f"{result.get('doc_id')} {result.get('status')} {result.get('page_count')} page(s)"
        f" {result.get('file_name') or ''}".rstrip()
    ]
    for failure in result.get("failures") or []:
        lines.append(f"  document failed in {failure.get('stage')}/{failure.get('step')}: {failure.get('message')}")
    for page in result.get("pages") or []:
        failure = page.get("failure")
        if failure:
            status = f"failed in {failure.get('stage')}/{failure.get('step')}: {failure.get('message')}"
        else:
            status = "ok"
        text = " ".join(line.get("text", "") for line in page.get("lines") or [])
        text = text if len(text) <= width else text[: width - 1] + "…"
        lines.append(f"  page {page.get('page_index', 0) + 1}: {status} | {text}")
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit a document to pagestream (NATS JetStream) and print its result as JSON.",
        epilog="exit codes: 0 complete, 1 failed or partial, 2 usage, 3 timeout, 4 NATS error",
    )
    parser.add_argument("file", help="the document: PDF, PNG, JPEG or TIFF")
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="NATS server URL, or several separated by commas (default: $NATS_URL or %(default)s)",
    )
    parser.add_argument(
        "--user", metavar="USER", default=os.environ.get("NATS_USER"), help="NATS user (default: $NATS_USER)"
    )
    parser.add_argument(
        "--password",
        metavar="PASSWORD",
        default=os.environ.get("NATS_PASSWORD"),
        help="NATS password (default: $NATS_PASSWORD)",
    )
    parser.add_argument(
        "--inbox-prefix",
        metavar="PREFIX",
        default="_INBOX",
        help="prefix of reply subjects, for accounts allowed only some of them (default: %(default)s)",
    )
    parser.add_argument(
        "--tenant",
        metavar="NAME",
        default=os.environ.get("PAGESTREAM_TENANT", "default"),
        help="tenant that owns the document (default: $PAGESTREAM_TENANT or %(default)s)",
    )
    parser.add_argument(
        "--file-name", metavar="NAME", help="file name recorded in the result (default: the file's own name)"
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=120.0,
        help="seconds to wait for the result (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get("PAGESTREAM_STORE"),
        help="file:// URL of the object store for results too large for a message"
        " (default: $PAGESTREAM_STORE, else the store the result names)",
    )
    parser.add_argument(
        "--summary", action="store_true", help="print one line per page (status, start of the text) instead of JSON"
    )
    args = parser.parse_args(argv)
    if not TENANT_RE.fullmatch(args.tenant):
        parser.error(f"--tenant {args.tenant!r}: 1 to 64 characters of a-z, 0-9, '-' and '_'")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


async def connect(args: argparse.Namespace) -> nats.NATS:
    """Connects, trying each server a few times; NATS errors after that go to stderr."""
    connected = False
    last_error: list[Exception] = []

    async def on_error(error: Exception) -> None:
        if connected:
            print(f"submit.py: warning: {error}", file=sys.stderr)
        else:
            last_error[:] = [error]

    try:
        nc = await nats.connect(
            servers=[url.strip() for url in args.server.split(",")],
            user=args.user,
            password=args.password,
            inbox_prefix=args.inbox_prefix,
            name="pagestream-python-submit",
            connect_timeout=5,
            max_reconnect_attempts=3,
            reconnect_time_wait=1,
            error_cb=on_error,
        )
    except Exception as error:
        cause = f" ({last_error[0]})" if last_error else ""
        raise Failure(EXIT_NATS, f"cannot connect to {args.server}: {error or type(error).__name__}{cause}") from None
    connected = True
    return nc


async def stored_result(nc: nats.NATS, subject: str) -> bytes | None:
    """The last result stored on `subject`, or None while there is none.

    A direct get first. A stream created without ``allow_direct`` leaves it
    unanswered (a timeout, after 5 s); the regular message get answers then.
    """
    jsm = nc.jsm()
    for direct in (True, False):
        try:
            message = await jsm.get_last_msg(RESULTS_STREAM, subject, direct=direct)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as caught:
            if direct:
                continue
            error = str(caught)
        except nats.errors.Error as caught:
            error = str(caught)
        else:
            return message.data
        # E.g. an account without permission for the JetStream API: the
        # subscription may still deliver the result of a submission in progress.
        print(f"submit.py: warning: cannot read {RESULTS_STREAM}: {error}", file=sys.stderr)
        return None
    return None


async def run(args: argparse.Namespace) -> dict:
    """Submits the document and returns its DocumentResult."""
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as error:
        raise Failure(EXIT_USAGE, f"cannot read {args.file}: {error.strerror}") from None
    file_name = args.file_name or os.path.basename(args.file)
    tenant = args.tenant
    # The run of this submission is its time: the workers copy it into the
    # result, which tells this run's result from an earlier run's.
    run_ms = int(time.time() * 1000)
    doc_id, payload = encode_submission(tenant, data, file_name, run_ms)

    nc = await connect(args)
    try:
        if len(payload) > nc.max_payload:
            raise Failure(
                EXIT_USAGE,
                f"{args.file}: the submission is {len(payload)} bytes, the server takes at most {nc.max_payload}"
                " per message (larger documents go through the object store: pagestream's own client)",
            )

        # 1. Subscribe first, so that the result cannot be published unseen.
        #    The flush makes sure the server has the subscription.
        result_subject = f"{PREFIX}.{tenant}.results.{doc_id}"
        subscription = await nc.subscribe(result_subject)
        await nc.flush()

        # 2. Publish through JetStream: the reply is the DOCS stream's PubAck.
        #    Nats-Msg-Id <tenant>/<doc_id> lets the stream drop a resubmission.
        headers = {
            "Nats-Msg-Id": f"{tenant}/{doc_id}",
            "Pagestream-Kind": "document_submission",
            "Pagestream-Schema": str(SCHEMA_VERSION),
            "Pagestream-Doc-Id": doc_id,
        }
        js = nc.jetstream()
        try:
            ack = await js.publish(f"{PREFIX}.{tenant}.submit", payload, timeout=10, headers=headers)
        except nats.js.errors.NoStreamResponseError:
            raise Failure(
                EXIT_NATS,
                f"no stream takes {PREFIX}.{tenant}.submit: are the streams created (pagestream streams apply)?",
            ) from None
        except nats.errors.Error as error:
            raise Failure(EXIT_NATS, f"the submission was not stored: {error}") from None
        print(
            f"submit.py: {doc_id} stored in {ack.stream} (sequence {ack.seq}"
            f"{', a duplicate of an earlier submission' if ack.duplicate else ''})",
            file=sys.stderr,
        )

        # 3. The result. A duplicate is not analysed again: its result is the
        #    stored one, or, while the earlier submission is still in the
        #    pipeline, the next one published. A new submission waits for the
        #    result of its own run, skipping one of an earlier run of the same
        #    document that happens to finish meanwhile.
        if ack.duplicate:
            raw = await stored_result(nc, result_subject)
            if raw is not None:
                return full_result(decode_result(raw), args.store)
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                message = await subscription.next_msg(timeout=max(deadline - time.monotonic(), 0.001))
            except nats.errors.TimeoutError:
                print(doc_id)
                raise Failure(EXIT_TIMEOUT, f"no result for {doc_id} within {args.timeout:g} s") from None
            except nats.errors.Error as error:
                raise Failure(EXIT_NATS, f"lost the connection waiting for the result of {doc_id}: {error}") from None
            result = decode_result(message.data)
            run = result.get("submitted_at_ms")
            if ack.duplicate or (isinstance(run, int) and run >= run_ms):
                return full_result(result, args.store)
    finally:
        await nc.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except Failure as failure:
        print(f"submit.py: error: {failure}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return 130
    try:
        if args.summary:
            print("\n".join(summary_lines(result)))
        else:
            json.dump(result, sys.stdout, indent=2, ensure_ascii=False, default=json_default)
            print()
        sys.stdout.flush()
    except BrokenPipeError:
        # stdout closed early (`| head`): the rest of the output goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_COMPLETE if result.get("status") == "complete" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
