#!/usr/bin/python3
"""shardsql.py - one client session driven line by line, for the sharding tests.

    /usr/bin/python3 shardsql.py CONNINFO < SCRIPT

It speaks through libpq (psycopg's pq module, the thinnest wrapper: no client-side
transaction logic), so the test sees what the protocol carried: every result of a
simple Query, the exact SQLSTATE of an error, the server-side transaction status.

Script lines (empty lines and lines starting with '#' are skipped):
  SQL                   sent as a simple Query (may hold several statements)
  \\p SQL ;; P1 ;; P2   sent with the extended protocol (Parse/Bind/Execute, unnamed),
                        parameters in text format, types left to the server; a
                        parameter written NULL is a NULL; b8:N is N as a binary int8
                        (type bigint), b4:N a binary int4, tOID:V the text V declared
                        of type OID (t701:2.5 a double precision)
  \\prepare NAME SQL     a named prepared statement (Parse, Sync); prints its result
  \\execute NAME ;; P1   Bind/Execute of that statement, parameters as for \\p
  \\status              prints IDLE, INTRANS, INERROR (the transaction status libpq
                        read from the last ReadyForQuery)
  \\sleep SECONDS

Output, one line per result, in order:
  SELECT n ROWS      a row set: the command tag, then the rows joined by ',' with
                     columns joined by '|' (NULL for a NULL); "(none)" for no rows
  TAG                any other command ("INSERT 0 3", "BEGIN", ...), OK for none
                     (the answer to a Parse)
  EMPTY              an empty query
  ERROR SQLSTATE MESSAGE
  COPY_OUT BYTES     the data of a COPY TO STDOUT, then its "COPY n" line
A lost connection prints "CONNECTION LOST" and exits 2.

Deliberately not here: any judgement. The .t scripts compare the lines.
"""
import sys
import time

from psycopg import pq

ST = pq.ExecStatus
SQLSTATE = pq.DiagnosticField.SQLSTATE
PRIMARY = pq.DiagnosticField.MESSAGE_PRIMARY


def fmt_value(v):
    if v is None:
        return "NULL"
    return v.decode("utf-8", "replace")


def report(conn, res):
    st = res.status
    if st == ST.TUPLES_OK:
        rows = []
        for i in range(res.ntuples):
            rows.append("|".join(fmt_value(res.get_value(i, j)) for j in range(res.nfields)))
        tag = fmt_value(res.command_status)
        print(f"{tag} {','.join(rows) if rows else '(none)'}")
    elif st == ST.COMMAND_OK:
        print(fmt_value(res.command_status) or "OK")
    elif st == ST.EMPTY_QUERY:
        print("EMPTY")
    elif st in (ST.FATAL_ERROR, ST.NONFATAL_ERROR):
        state = fmt_value(res.error_field(SQLSTATE))
        msg = fmt_value(res.error_field(PRIMARY)).split("\n")[0]
        print(f"ERROR {state} {msg}")
    elif st == ST.COPY_OUT:
        total = 0
        while True:
            n, data = conn.get_copy_data(0)
            if n < 0:
                break
            total += len(data)
        print(f"COPY_OUT {total}")
    elif st == ST.COPY_IN:
        conn.put_copy_end(b"shardsql.py sends no COPY data")
        print("COPY_IN refused by shardsql.py")
    else:
        print(f"STATUS {st.name}")


def drain(conn):
    while True:
        res = conn.get_result()
        if res is None:
            break
        report(conn, res)
    if conn.status != pq.ConnStatus.OK:
        print("CONNECTION LOST")
        sys.stdout.flush()
        sys.exit(2)
    sys.stdout.flush()


def param(p):
    """(value, type oid, format) of one parameter token"""
    if p == "NULL":
        return None, 0, 0
    if p.startswith("b8:"):
        return int(p[3:]).to_bytes(8, "big", signed=True), 20, 1
    if p.startswith("b4:"):
        return int(p[3:]).to_bytes(4, "big", signed=True), 23, 1
    if p.startswith("t") and ":" in p and p[1:p.index(":")].isdigit():
        return p[p.index(":") + 1:].encode(), int(p[1:p.index(":")]), 0
    return p.encode(), 0, 0


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: shardsql.py CONNINFO < SCRIPT")
    conn = pq.PGconn.connect(sys.argv[1].encode())
    if conn.status != pq.ConnStatus.OK:
        print("CONNECT FAILED " + fmt_value(conn.error_message).strip())
        sys.exit(2)
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line == "\\status":
            print(pq.TransactionStatus(conn.transaction_status).name)
        elif line.startswith("\\sleep "):
            time.sleep(float(line[7:]))
        elif line.startswith("\\prepare "):
            name, sql = line[9:].split(" ", 1)
            conn.send_prepare(name.encode(), sql.encode())
            drain(conn)
        elif line.startswith("\\execute "):
            parts = line[9:].split(" ;; ")
            ps = [param(p) for p in parts[1:]]
            conn.send_query_prepared(parts[0].encode(), [p[0] for p in ps],
                                     param_formats=[p[2] for p in ps])
            drain(conn)
        elif line.startswith("\\p "):
            parts = line[3:].split(" ;; ")
            ps = [param(p) for p in parts[1:]]
            conn.send_query_params(parts[0].encode(), [p[0] for p in ps],
                                   param_types=[p[1] for p in ps],
                                   param_formats=[p[2] for p in ps])
            drain(conn)
        else:
            conn.send_query(line.encode())
            drain(conn)
    conn.finish()


if __name__ == "__main__":
    main()
