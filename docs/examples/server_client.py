#!/usr/bin/env python3
"""A client of `sixfold serve` using only Python's standard library (docs/server.md).

Usage: python3 server_client.py http://127.0.0.1:7070

It creates a database, writes typed values with bound parameters in one transaction,
reads them back with their types intact, shows an SQL error, and prints what it did.
The test suite runs it against a live server (impl/cli/tests/serve.rs), so it must
exit non-zero if anything is not as documented.
"""

import base64
import json
import sys
import urllib.error
import urllib.request


class SixfoldError(Exception):
    """An error answer: HTTP status, and the server's {"kind", "message", ...}."""

    def __init__(self, status, error):
        super().__init__(f"{status} {error.get('kind')}: {error.get('message')}")
        self.status = status
        self.error = error


class Client:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as failure:
            raise SixfoldError(failure.code, json.load(failure)["error"]) from None

    def create_database(self, name):
        return self._call("POST", "/v1/db", {"name": name})

    def databases(self):
        return [db["name"] for db in self._call("GET", "/v1/db")["databases"]]

    def transaction(self, db, statements):
        """Runs [(sql, params), ...] as one transaction; returns the results."""
        body = {"statements": [{"sql": sql, "params": params} for sql, params in statements]}
        return self._call("POST", f"/v1/db/{db}", body)

    def query(self, db, sql, params=None):
        """One statement; returns its rows as tuples of Python values."""
        answer = self._call("POST", f"/v1/db/{db}", {"sql": sql, "params": params or []})
        return [tuple(decode(value) for value in row) for row in answer["results"][0]["rows"]]


def encode(value):
    """A Python value as the API's JSON value: bytes become {"base64": ...}."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def decode(value):
    """The API's JSON value as a Python value: {"base64": ...} becomes bytes."""
    if isinstance(value, dict) and "base64" in value:
        return base64.b64decode(value["base64"])
    if isinstance(value, dict) and "real" in value:
        return float(value["real"])
    return value


def main():
    client = Client(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7070")
    client.create_database("pyexample")
    assert "pyexample" in client.databases()
    row = (7, 2.0, "héllo", None, b"\x00\x01\xff")
    answer = client.transaction(
        "pyexample",
        [
            ("CREATE TABLE IF NOT EXISTS items(i INTEGER, r REAL, t TEXT, n, b BLOB)", []),
            ("DELETE FROM items", []),
            ("INSERT INTO items VALUES (?, ?, ?, ?, ?)", [encode(v) for v in row]),
        ],
    )
    lsn = answer["commit_lsn"]
    assert isinstance(lsn, int) and lsn > 0, answer
    print(f"committed at LSN {lsn} (durable: VDL has passed it)")
    rows = client.query("pyexample", "SELECT i, r, t, n, b FROM items")
    assert rows == [row], rows
    assert isinstance(rows[0][1], float)
    print("read back:", rows[0])
    try:
        client.query("pyexample", "INSERT INTO nowhere VALUES (1)")
        raise SystemExit("expected an error")
    except SixfoldError as error:
        assert error.status == 422 and error.error["code_name"] == "SQLITE_ERROR", error
        print("SQL error:", error)


if __name__ == "__main__":
    main()
