#!/usr/bin/python3
"""fanout_binary.py - fan-out reads through the extended protocol, against an unsharded copy.

    /usr/bin/python3 fanout_binary.py SHARDED_CONNINFO PLAIN_CONNINFO < QUERIES

Each input line is "sorted<TAB>SQL" or "ordered<TAB>SQL", optionally followed by
"<TAB>PARAMS" (a JSON list of values for the %s placeholders, which psycopg sends as
Bind parameters $1, $2 ...), with {S} for the sharded table and {P} for the
unsharded one. Every query runs through psycopg twice, with binary results (every
column in binary format, as asyncpg and pgx ask) and with text results (as JDBC and
node-postgres), against both databases. Output, one line per query and format:
  same<TAB>SQL            the two answers are equal (as sets for "sorted")
  differ<TAB>SQL<TAB>...  they are not, with both answers
  refused<TAB>SQL<TAB>SQLSTATE MESSAGE   the sharded side refused it
"""
import json
import sys

import psycopg


def fetch(conn, sql, params, binary):
    with conn.cursor(binary=binary) as cur:
        # prepare=True: Parse once, then Bind/Execute, as drivers with a statement cache
        cur.execute(sql, params, prepare=bool(params))
        return cur.fetchall()


def main():
    sharded = psycopg.connect(sys.argv[1], autocommit=True)
    plain = psycopg.connect(sys.argv[2], autocommit=True)
    for line in sys.stdin:
        kind, _, rest = line.rstrip("\n").partition("\t")
        sql, _, params = rest.partition("\t")
        if not sql:
            continue
        params = json.loads(params) if params else None
        for binary in (True, False):
            label = f"{sql}{' ' + json.dumps(params) if params else ''} ({'binary' if binary else 'text'})"
            want = fetch(plain, sql.replace("{S}", "{P}").replace("{P}", "t81_flat"), params, binary)
            try:
                got = fetch(sharded, sql.replace("{S}", "t81_data"), params, binary)
            except psycopg.Error as e:
                print(f"refused\t{label}\t{e.sqlstate} {str(e).splitlines()[0]}")
                continue
            if kind == "sorted":
                key = lambda r: repr(r)
                got, want = sorted(got, key=key), sorted(want, key=key)
            if got == want:
                print(f"same\t{label}")
            else:
                print(f"differ\t{label}\t{want[:3]!r}\t{got[:3]!r}")
    print("end")


main()
