#!/usr/bin/python3
"""fanout_binary.py - fan-out reads with binary results, against an unsharded copy.

    /usr/bin/python3 fanout_binary.py SHARDED_CONNINFO PLAIN_CONNINFO < QUERIES

Each input line is "sorted<TAB>SQL" or "ordered<TAB>SQL", with {S} for the sharded
table and {P} for the unsharded one. Every query runs through psycopg with binary
results (extended protocol, every column in binary format, as asyncpg and pgx ask)
against both databases. Output, one line per query:
  same<TAB>SQL            the two answers are equal (as sets for "sorted")
  differ<TAB>SQL<TAB>...  they are not, with both answers
  refused<TAB>SQL<TAB>SQLSTATE MESSAGE   the sharded side refused it
"""
import sys

import psycopg


def fetch(conn, sql):
    with conn.cursor(binary=True) as cur:
        cur.execute(sql)
        return cur.fetchall()


def main():
    sharded = psycopg.connect(sys.argv[1], autocommit=True)
    plain = psycopg.connect(sys.argv[2], autocommit=True)
    for line in sys.stdin:
        kind, _, sql = line.rstrip("\n").partition("\t")
        if not sql:
            continue
        want = fetch(plain, sql.replace("{S}", "{P}").replace("{P}", "t81_flat"))
        try:
            got = fetch(sharded, sql.replace("{S}", "t81_data"))
        except psycopg.Error as e:
            print(f"refused\t{sql}\t{e.sqlstate} {str(e).splitlines()[0]}")
            continue
        if kind == "sorted":
            key = lambda r: repr(r)
            got, want = sorted(got, key=key), sorted(want, key=key)
        if got == want:
            print(f"same\t{sql}")
        else:
            print(f"differ\t{sql}\t{want[:3]!r}\t{got[:3]!r}")
    print("end")


main()
