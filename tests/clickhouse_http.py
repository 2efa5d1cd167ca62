"""A loopback ClickHouse HTTP interface served from the embedded engine chdb, for tests.

No installable ClickHouse server here speaks the current protocol, yet the server backend talks to
ClickHouse through clickhouse-connect over HTTP.  This module serves just enough of ClickHouse's
HTTP interface (https://clickhouse.com/docs/interfaces/http) on 127.0.0.1 for clickhouse-connect
to run unmodified against a real ClickHouse engine: queries with ``param_*`` bindings in any output
format, ``database``, per-request settings, ``Native`` inserts in chunked and compressed bodies,
and ClickHouse's error responses.

chdb lets only one session open a store, and one session per process, so the server runs as its
own process holding one session for its lifetime and serialises every chdb call with a lock::

    python tests/clickhouse_http.py --path DIR [--port 0]    # prints "PORT <n>" once listening

or, from a test, ``with serve(tmp_path) as port: clickhouse_connect.get_client(port=port, ...)``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# URL parameters that belong to the HTTP layer rather than to a query's settings.  clickhouse-connect
# sends some of them (and `enable_http_compression` & co. below) on every request; the transport
# ones mean nothing without a network between client and engine, so they are ignored.
_HTTP_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "wait_end_of_query",
        "buffer_size",
        "user",
        "password",
        "quota_key",
        "client_protocol_version",
        "stacktrace",
        "compress",
        "decompress",
        "role",
    }
)
_IGNORED_SETTINGS = frozenset(
    {
        "enable_http_compression",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_zlib_compression_level",
        "readonly",  # once set, the shared session could never set anything back
    }
)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# An insert statement with data after it, on one line as clickhouse-connect writes it (so that a
# multi-line `INSERT ... VALUES` holding the word FORMAT stays SQL).  The data begins as ClickHouse
# has it: after the format name, blanks and one newline.
_INSERT_WITH_DATA = re.compile(rb"\s*(INSERT\s+INTO\s[^\n]*?)\bFORMAT\s+(\w+)[ \t\f]*\r?\n?", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_STD_EXCEPTION = 1001  # ClickHouse's code for errors that are not its own


class ClickHouseError(Exception):
    """An error to answer as ClickHouse does: HTTP 500, the code in a header, the text as body."""

    def __init__(self, message: str, code: int = _STD_EXCEPTION) -> None:
        super().__init__(message)
        self.code = code


def _sql_string(value: str) -> str:
    """Quote `value` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_identifier(name: str) -> str:
    """Quote `name` as a ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _decompress(body: bytes, encoding: str) -> bytes:
    """Undo a request's Content-Encoding with the codecs clickhouse-connect compresses with.

    Compressed streams may hold several frames (one per insert block), so lz4 is read frame by frame.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        parts = []
        while body:
            decoder = lz4.frame.LZ4FrameDecompressor()
            parts.append(decoder.decompress(body))
            if not decoder.eof:
                raise ClickHouseError("truncated lz4 request body")
            body = decoder.unused_data
        return b"".join(parts)
    if encoding == "zstd":
        for module in ("compression.zstd", "backports.zstd"):  # the stdlib API reads every frame
            with contextlib.suppress(ImportError):
                return __import__(module, fromlist=["decompress"]).decompress(body)
        import io

        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True).read()
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    raise ClickHouseError(f"Unknown Content-Encoding: {encoding}")


def _form_fields(content_type: str, body: bytes) -> list[tuple[str, str]] | None:
    """Fields of a form-encoded request, or None when the body is plain query text.

    clickhouse-connect switches to multipart/form-data (query and `param_*` as fields) once the bound
    parameters would make the URL too long, e.g. for long IN lists.  Like ClickHouse, any other body is
    query text, even one labelled x-www-form-urlencoded (as `curl --data-binary` labels it).
    """
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields = []
    for part in message.iter_parts():
        if part.get_filename() is not None:
            raise ClickHouseError("external data tables are not supported by this test server")
        name = part.get_param("name", header="content-disposition")
        fields.append((str(name), (part.get_payload(decode=True) or b"").decode()))
    return fields


class ChdbServer(ThreadingHTTPServer):
    """An HTTP server that owns the process's one chdb session and runs every query through it.

    The session is shared, so the per-request state the HTTP interface gives each query is switched
    under the lock before the query runs: the database every time (a query may have run `USE`), the
    settings only where they differ from the previous request's (clickhouse-connect repeats the same
    ones on every request).  A query's own `SET` outlives it, unlike on a real server.
    """

    daemon_threads = True

    def __init__(self, store: Path, port: int = 0) -> None:
        from chdb import session

        self.lock = threading.Lock()
        self.session: Any = session.Session(str(store))
        self.settings_names = frozenset(self._text("SELECT name FROM system.settings").split())
        self._settings: dict[str, str] = {}
        super().__init__(("127.0.0.1", port), ChdbHandler)

    def _text(self, sql: str) -> str:
        return self.session.query(sql, "TabSeparated").bytes().decode()

    def close_session(self) -> None:
        """Close the chdb session once no query is running; later requests are refused."""
        with self.lock:
            if self.session is not None:
                self.session.close()
                self.session = None

    def execute(self, sql: str, fmt: str, params: Mapping[str, str], database: str, settings: Mapping[str, str]) -> Any:
        """Run one query as its own HTTP request would: in `database`, with `settings`, bound `params`."""
        with self.lock:
            if self.session is None:
                raise ClickHouseError("the server is shutting down")
            try:
                self._switch(database, settings)
                return self.session.query(sql, fmt, params=dict(params) or None)
            except RuntimeError as exc:  # chdb raises ClickHouse's own "Code: N. DB::Exception: ..."
                match = _ERROR_CODE.search(str(exc))
                raise ClickHouseError(str(exc), int(match.group(1)) if match else _STD_EXCEPTION) from exc

    def _switch(self, database: str, settings: Mapping[str, str]) -> None:
        self.session.query(f"USE {_sql_identifier(database)}")
        for name in [n for n in self._settings if n not in settings]:
            self.session.query(f"SET {_sql_identifier(name)} = DEFAULT")
            del self._settings[name]
        for name, value in settings.items():
            if self._settings.get(name) != value:
                self.session.query(f"SET {_sql_identifier(name)} = {_sql_string(value)}")
                self._settings[name] = value


class ChdbHandler(BaseHTTPRequestHandler):
    """One HTTP request: read it as ClickHouse's HTTP handler does and answer with chdb's bytes."""

    protocol_version = "HTTP/1.1"  # keep-alive, which clickhouse-connect's connection pool expects
    server: ChdbServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("CLICKHOUSE_HTTP_DEBUG"):
            super().log_message(format, *args)

    def _serve(self) -> None:
        query_id = str(uuid.uuid4())
        try:
            url = urlsplit(self.path)
            body = self._read_body()
            if url.path.rstrip("/") in ("/ping", "") and "query" not in url.query and not body:
                self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            fields = parse_qsl(url.query, keep_blank_values=True)
            body = _decompress(body, self.headers.get("Content-Encoding", ""))
            form = _form_fields(self.headers.get("Content-Type", ""), body)
            if form is not None:
                fields, body = fields + form, b""
            args = dict(fields)
            query_id = args.get("query_id") or query_id
            if args.get("decompress", "0") != "0" or args.get("compress", "0") != "0":
                raise ClickHouseError("ClickHouse's native `compress`/`decompress` framing is not supported")
            if os.environ.get("CLICKHOUSE_HTTP_DEBUG"):
                print(
                    f"request {self.command} {sorted(args)} {dict(self.headers)} {len(body)} bytes {body[:120]!r}",
                    file=sys.stderr,
                )
            self._run(args, body, query_id)
        except ClickHouseError as exc:
            self._error(exc.code, str(exc), query_id)
        except Exception as exc:  # a malformed request: still answer as ClickHouse would
            self._error(_STD_EXCEPTION, f"{type(exc).__name__}: {exc}", query_id)

    def _run(self, args: Mapping[str, str], body: bytes, query_id: str) -> None:
        """Run the URL query followed by the body (ClickHouse joins them); stage inline insert data."""
        text = (
            (args.get("query", "").encode() + b"\n" + body)
            if args.get("query") and body
            else (args.get("query", "").encode() or body)
        )
        params = {k[len("param_") :]: v for k, v in args.items() if k.startswith("param_")}
        settings = {
            k: v
            for k, v in args.items()
            if k in self.server.settings_names and k not in _HTTP_PARAMS | _IGNORED_SETTINGS
        }
        database = args.get("database") or "default"
        if not text.strip():
            raise ClickHouseError("Empty query", 62)
        insert = _INSERT_WITH_DATA.match(text)
        if insert is None:
            sql = text.decode()
            trailing = _TRAILING_FORMAT.search(sql)
            fmt = trailing.group(1) if trailing else args.get("default_format") or "TabSeparated"
            result = self.server.execute(sql, fmt, params, database, settings)
        else:
            fmt = args.get("default_format") or "TabSeparated"
            result = self._insert(
                insert.group(1).decode(), insert.group(2).decode(), text[insert.end() :], params, database, settings
            )
        summary = {
            "read_rows": result.rows_read(),
            "read_bytes": result.bytes_read(),
            "written_rows": result.rows_written(),
            "written_bytes": result.bytes_written(),
            "total_rows_to_read": 0,
            "result_rows": 0,
            "result_bytes": 0,
            "elapsed_ns": int(result.elapsed() * 1e9),
        }
        self._reply(
            200,
            result.bytes(),
            {
                "Content-Type": "application/octet-stream"
                if fmt in ("Native", "RowBinary", "Arrow", "Parquet")
                else "text/plain; charset=UTF-8",
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Summary": json.dumps({k: str(v) for k, v in summary.items()}),
            },
        )

    def _insert(
        self,
        statement: str,
        fmt: str,
        data: bytes,
        params: Mapping[str, str],
        database: str,
        settings: Mapping[str, str],
    ) -> Any:
        """Insert inline data: chdb takes no binary input with a query, so read it back with file()."""
        handle, staged = tempfile.mkstemp(prefix="chdb-insert-", suffix=f".{fmt.lower()}")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            sql = f"{statement} SELECT * FROM file({_sql_string(staged)}, {fmt})"
            return self.server.execute(sql, "TabSeparated", params, database, settings)
        finally:
            os.unlink(staged)

    def _read_body(self) -> bytes:
        """The request body, whether sized by Content-Length or chunked (clickhouse-connect streams inserts)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""
        chunks = []
        while size := int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF closing the chunk
        while self.rfile.readline(65537).strip():  # trailers, up to the empty line
            pass
        return b"".join(chunks)

    def _error(self, code: int, message: str, query_id: str) -> None:
        text = message if message.startswith("Code:") else f"Code: {code}. DB::Exception: {message}"
        self._reply(
            500,
            text.rstrip().encode() + b"\n",
            {
                "Content-Type": "text/plain; charset=UTF-8",
                "X-ClickHouse-Exception-Code": str(code),
                "X-ClickHouse-Query-Id": query_id,
            },
        )

    def _reply(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in {
            **headers,
            "X-ClickHouse-Server-Display-Name": "chdb-test",
            "X-ClickHouse-Timezone": "UTC",
            "Content-Length": str(len(payload)),
        }.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def main(argv: list[str] | None = None) -> None:
    """Serve `--path` on 127.0.0.1 until SIGTERM or SIGINT, then close the chdb session cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="chdb store directory")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    os.environ["TZ"] = "UTC"  # the server timezone it announces; set before chdb loads
    time.tzset()
    stops = {signal.SIGTERM, signal.SIGINT}
    for sig in stops:  # a shell's background job starts with SIGINT ignored, which sigwait cannot see
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # before any thread starts: only sigwait sees them
    server = ChdbServer(args.path, args.port)
    worker = threading.Thread(target=server.serve_forever, args=(0.05,), name="clickhouse-http", daemon=True)
    worker.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    signal.sigwait(stops)
    server.shutdown()
    server.server_close()
    server.close_session()


@contextlib.contextmanager
def serve(path: str | os.PathLike[str], port: int = 0, timeout: float = 60.0) -> Iterator[int]:
    """Run the server on store `path` in a subprocess for the block; yield the port it listens on.

    A subprocess because chdb allows one session per process (and per store): the test process keeps
    its own chdb free, and the store is released when the block ends.
    """
    proc = subprocess.Popen(
        [sys.executable, __file__, "--path", os.fspath(path), "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"clickhouse_http did not start (exit code {proc.poll()}, said {line!r})")
        yield int(line.split()[1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    main()
