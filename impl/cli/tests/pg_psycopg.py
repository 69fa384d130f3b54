"""psycopg 3 against `sixfold serve --pg` (spec/server.md H20-H30), run by
impl/cli/tests/serve_pg.rs. With --bench it measures commits/s instead:

    python3 pg_psycopg.py --port 5432 --db app --bench --clients 8 --seconds 10
    python3 pg_psycopg.py --port 5432 --db app --bench --http http://127.0.0.1:7070

(the second runs the same INSERT loop through the HTTP/JSON API, for comparison).
"""

import argparse
import threading
import time

import psycopg
from psycopg import errors


def connect(args, **kw):
    return psycopg.connect(
        host="127.0.0.1", port=args.port, dbname=args.db, user="tester", **kw
    )


def check(args):
    with connect(args, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL, data BLOB)"
        )

    # Default psycopg: a transaction per `with` block, parameters bound server-side
    # through the extended protocol ($1, $2, ...), bytes in binary format.
    with connect(args) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items VALUES (%s, %s, %s, %s)",
                [
                    (1, "apple", 1.25, b"\x00\x01\xff"),
                    (2, "", None, None),
                    (3, None, 3.0, b""),
                ],
            )
            assert cur.rowcount in (1, 3), cur.rowcount
        conn.commit()
        rows = conn.execute("SELECT id, name, price, data FROM items ORDER BY id").fetchall()
        assert rows == [
            (1, "apple", 1.25, b"\x00\x01\xff"),
            (2, "", None, None),
            (3, None, 3.0, b""),
        ], rows
        # NULL and '' stay apart.
        assert conn.execute("SELECT name IS NULL FROM items WHERE id = %s", (2,)).fetchone() == (0,)
        assert conn.execute("SELECT name IS NULL FROM items WHERE id = %s", (3,)).fetchone() == (1,)
        conn.commit()

        # Rollback undoes, commit keeps.
        conn.execute("DELETE FROM items")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (3,)
        with conn.transaction():
            conn.execute("UPDATE items SET price = price * 2 WHERE id = %s", (1,))
        assert conn.execute("SELECT price FROM items WHERE id = 1").fetchone() == (2.5,)
        conn.commit()

        # An error with its SQLSTATE; the transaction fails until rolled back, then the
        # connection goes on.
        try:
            conn.execute("INSERT INTO items(id) VALUES (%s)", (1,))
            raise AssertionError("duplicate key accepted")
        except errors.UniqueViolation as error:
            assert error.sqlstate == "23505", error.sqlstate
        try:
            conn.execute("SELECT 1")
            raise AssertionError("a failed transaction went on")
        except errors.InFailedSqlTransaction:
            pass
        conn.rollback()
        try:
            conn.execute("SELEC 1")
        except errors.SyntaxError as error:
            assert error.sqlstate == "42601"
        conn.rollback()
        assert conn.execute("SELECT %s + %s", (40, 2)).fetchone() == (42,)
        conn.commit()

        # Prepared statements: psycopg prepares a query after five runs.
        for i in range(10, 20):
            conn.execute("INSERT INTO items(id, name) VALUES (%s, %s)", (i, f"n{i}"))
        conn.commit()
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (13,)

    # Two clients at once: each sees the other's commits.
    a, b = connect(args, autocommit=True), connect(args, autocommit=True)
    a.execute("INSERT INTO items(id, name) VALUES (100, 'from a')")
    assert b.execute("SELECT name FROM items WHERE id = 100").fetchone() == ("from a",)
    with b.transaction():
        b.execute("INSERT INTO items(id, name) VALUES (101, 'from b')")
    assert a.execute("SELECT count(*) FROM items WHERE id >= 100").fetchone() == (2,)
    a.close()
    b.close()
    print("psycopg: all checks passed")


def http_insert(args):
    import json
    import urllib.request

    def post(sql, params):
        body = json.dumps({"sql": sql, "params": params}).encode()
        request = urllib.request.Request(
            f"{args.http}/v1/db/{args.db}", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as answer:
            answer.read()

    return post


def bench(args):
    if args.http:
        post = http_insert(args)
        post("CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, client, v)", [])
    else:
        with connect(args, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, client, v)")
    counts = [0] * args.clients
    stop = time.monotonic() + args.seconds

    def client(n):
        if args.http:
            while time.monotonic() < stop:
                post("INSERT INTO bench(client, v) VALUES (?, ?)", [n, "x" * 100])
                counts[n] += 1
            return
        with connect(args, autocommit=True) as conn:
            while time.monotonic() < stop:
                conn.execute("INSERT INTO bench(client, v) VALUES (%s, %s)", (n, "x" * 100))
                counts[n] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    path = "http" if args.http else "psycopg"
    print(f"{path} clients={args.clients} commits={sum(counts)} commits/s={sum(counts) / elapsed:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--http", help="with --bench: the same loop over HTTP at this URL")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    bench(args) if args.bench else check(args)
