// pgx_test.go - Go's pgx v4 driver against shardpool in transaction pooling; driven by
// test/integration/65_pgx.t, which builds it in GOPATH mode against Debian's
// /usr/share/gocode (golang-github-jackc-pgx-v4-dev) as package main. (The name ends in
// _test.go only to say what it is: the .t copies it to main.go before `go build`.)
//
//	pgxcheck PORT DATABASE TABLE [sharded]
//
// Connects as app/secret. Every check prints one line
//
//	check<TAB>description<TAB>got<TAB>expected
//
// which the .t turns into a TAP `is` (a check whose description matches the regular
// expression in PGX_TODO prints `todo` instead of `check`, which the .t turns into a TAP
// line marked TODO); other lines are diagnostics; `end` comes last. The
// line `rows<TAB>N` gives the number of rows TABLE holds at the end (the .t compares it
// with what it finds on the shards). The same program runs unchanged against
// PostgreSQL itself (DATABASE app on the primary's port), which is how a failing check is
// told apart from a driver quirk.
//
// What it covers: pgx's default statement cache (named statements lrupsc_N_M prepared
// once per connection, from 8 connections at once and from a second process whose
// statements have the same names and other texts), a cache small enough that pgx
// evicts (`deallocate lrupsc_N_M`), statements prepared under the application's own
// name and deallocated by it, cached statements whose result type an ALTER TABLE
// changes (0A000, then pgx prepares again), the describe cache mode and the simple
// protocol, pgx.Batch (20 queued statements; one failing at statement 5; 3000 SELECTs;
// 1000 INSERTs), CopyFrom (binary COPY), transactions with savepoints, read-only and
// serializable transactions, binary round trips of the common types, errors from
// Parse, cancellation by a context timeout (of a read by one key and of a read by
// several) and by PgConn().CancelRequest while another connection's query runs, a 20 MB
// value both ways, Ping, ParameterStatus, and session settings that stay with their
// connection. With `sharded`, TABLE (id bigint PRIMARY KEY, v text NOT NULL) is sharded
// by id in DATABASE (the caller creates it on every shard): rows go by the key in their
// Bind parameters, batches are split by shard, reads without a key fan out, and a
// binary COPY into TABLE is split by key (one failing on a shard keeps no row) as
// one into an unsharded table (which lives on default_shard) works.
//
// The child mode `pgxcheck cachework PORT DATABASE` is the second process of the
// statement cache check.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgconn/stmtcache"
	"github.com/jackc/pgtype"
	"github.com/jackc/pgx/v4"
)

var (
	outMu   sync.Mutex
	port    string
	dbname  string
	table   string
	sharded bool

	// keys of TABLE's rows that the program expects to be there at the end
	keysMu sync.Mutex
	keys   = map[int64]string{}

	// PGX_TODO: checks whose description matches print as `todo` lines (the .t marks
	// them TODO: known shardpool bugs)
	todoRe *regexp.Regexp
)

func clean(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

func check(desc string, got, expected interface{}) {
	kind := "check"
	if todoRe != nil && todoRe.MatchString(desc) {
		kind = "todo"
	}
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf("%s\t%s\t%s\t%s\n", kind, clean(desc), clean(fmt.Sprint(got)), clean(fmt.Sprint(expected)))
}

func diag(format string, args ...interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Println(clean(fmt.Sprintf(format, args...)))
}

// state: the SQLSTATE of a server error, "ok" for none, else the error's type and text
func state(err error) string {
	if err == nil {
		return "ok"
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return fmt.Sprintf("%T: %v", err, err)
}

// group runs one part; an error or a panic becomes a failing check, and the others go on
func group(name string, fn func(ctx context.Context) error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	func() {
		defer func() {
			if r := recover(); r != nil {
				check(name+": completes without a panic", fmt.Sprint(r), "no panic")
			}
		}()
		if err := fn(ctx); err != nil {
			check(name+": completes without an error", state(err)+" "+err.Error(), "no error")
		}
	}()
	diag("%s took %d ms", name, time.Since(t0).Milliseconds())
}

func connString(extra string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%s dbname=%s user=app password=secret connect_timeout=20 %s",
		port, dbname, extra)
}

func connect(ctx context.Context, extra string, simple bool) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(connString(extra))
	if err != nil {
		return nil, err
	}
	cfg.PreferSimpleProtocol = simple
	return pgx.ConnectConfig(ctx, cfg)
}

func mustConnect(ctx context.Context) *pgx.Conn {
	c, err := connect(ctx, "", false)
	if err != nil {
		panic("connect: " + err.Error())
	}
	return c
}

func addKey(k int64, v string) {
	keysMu.Lock()
	keys[k] = v
	keysMu.Unlock()
}

func slash(a, b string) string { return a + "/" + b }

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ------------------------------------------------------------------ workload

// workload: n connections (each from `extra`/`simple`), rounds of two statements
// without a table and, every 5th round, an INSERT by key read back by key. The keys
// are keyBase + 1000*connection + round. Returns wrong results, rows inserted and
// read back, and each connection's statement cache (mode, length, first name).
type cacheInfo struct {
	mode  string
	len   int
	names []string
}

func workload(ctx context.Context, extra string, simple bool, n, rounds int, keyBase int64,
	q1, q2 string, f1 func(a int64, b int32) int64, f2 func(a, b string) string, insert bool) (bad, rows int, infos []cacheInfo, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	infos = make([]cacheInfo, n)
	var firstErr error
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			fail := func(e error) {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("connection %d: %w", g, e)
				}
				mu.Unlock()
			}
			c, e := connect(ctx, extra, simple)
			if e != nil {
				fail(e)
				return
			}
			defer c.Close(context.Background())
			myBad, myRows := 0, 0
			for i := 0; i < rounds; i++ {
				var r1 int64
				if e := c.QueryRow(ctx, q1, int64(g*100000+i), int32(g)).Scan(&r1); e != nil {
					fail(e)
					return
				}
				if r1 != f1(int64(g*100000+i), int32(g)) {
					myBad++
				}
				var r2 string
				if e := c.QueryRow(ctx, q2, fmt.Sprintf("g%d", g), fmt.Sprintf("i%d", i)).Scan(&r2); e != nil {
					fail(e)
					return
				}
				if r2 != f2(fmt.Sprintf("g%d", g), fmt.Sprintf("i%d", i)) {
					myBad++
				}
				if insert && i%5 == 0 {
					k := keyBase + int64(g*1000+i)
					v := fmt.Sprintf("w%d", k)
					if _, e := c.Exec(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, $2)", k, v); e != nil {
						fail(e)
						return
					}
					addKey(k, v)
					var got string
					if e := c.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&got); e != nil {
						fail(e)
						return
					}
					if got == v {
						myRows++
					} else {
						myBad++
					}
				}
			}
			info := cacheInfo{mode: "none"}
			if sc := c.StatementCache(); sc != nil {
				switch sc.Mode() {
				case stmtcache.ModePrepare:
					info.mode = "prepare"
				case stmtcache.ModeDescribe:
					info.mode = "describe"
				}
				info.len = sc.Len()
				for _, q := range []string{q1, q2} {
					if sd, e := sc.Get(ctx, q); e == nil {
						info.names = append(info.names, sd.Name)
					}
				}
			}
			mu.Lock()
			bad += myBad
			rows += myRows
			infos[g] = info
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	return bad, rows, infos, firstErr
}

// allNamesPrefixed: "yes" if both statements of every connection are cached under a
// name that starts with prefix ("" = unnamed statements only)
func allNamesPrefixed(infos []cacheInfo, prefix string) string {
	for _, in := range infos {
		if len(in.names) != 2 {
			return fmt.Sprintf("names %q", in.names)
		}
		for _, nm := range in.names {
			if !strings.HasPrefix(nm, prefix) || (prefix == "") != (nm == "") {
				return fmt.Sprintf("name %q", nm)
			}
		}
	}
	return "yes"
}

func modes(infos []cacheInfo) string {
	seen := map[string]bool{}
	var out []string
	for _, in := range infos {
		if !seen[in.mode] {
			seen[in.mode] = true
			out = append(out, in.mode)
		}
	}
	return strings.Join(out, ",")
}

// the second process of the statement cache check: same statement names, other texts
func cachework() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bad, _, infos, err := workload(ctx, "", false, 4, 150, 0,
		"SELECT $1::int8 * 7 - $2::int4", "SELECT $2::text || '/' || $1::text",
		func(a int64, b int32) int64 { return a*7 - int64(b) }, func(a, b string) string { return b + "/" + a }, false)
	if err != nil {
		fmt.Printf("error %s %v\n", state(err), err)
		os.Exit(1)
	}
	fmt.Printf("bad %d names %s\n", bad, allNamesPrefixed(infos, "lrupsc_"))
}

// ------------------------------------------------------------------ main

func main() {
	if len(os.Args) >= 4 && os.Args[1] == "cachework" {
		port, dbname = os.Args[2], os.Args[3]
		cachework()
		return
	}
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: pgxcheck PORT DATABASE TABLE [sharded]")
		os.Exit(2)
	}
	port, dbname, table = os.Args[1], os.Args[2], os.Args[3]
	if re := os.Getenv("PGX_TODO"); re != "" {
		todoRe = regexp.MustCompile(re)
	}
	sharded = len(os.Args) > 4 && os.Args[4] == "sharded"
	copyTable := table + "_copy"

	group("setup", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
		check("SELECT 1", one, 1)
		if !sharded {
			if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
				return err
			}
			if _, err := c.Exec(ctx, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, v text NOT NULL)"); err != nil {
				return err
			}
		}
		// in the sharded database this table has no [table] section: it lives on
		// default_shard, where DDL naming it goes
		if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+copyTable); err != nil {
			return err
		}
		_, err := c.Exec(ctx, "CREATE TABLE "+copyTable+" (id bigint, v text, n int4)")
		return err
	})

	// 1. the default statement cache: named statements, prepared once per connection
	group("statement cache (prepare)", func(ctx context.Context) error {
		child := exec.Command(os.Args[0], "cachework", port, dbname)
		var childOut bytes.Buffer
		child.Stdout = &childOut
		child.Stderr = &childOut
		if err := child.Start(); err != nil {
			return err
		}
		bad, rows, infos, err := workload(ctx, "", false, 8, 150, 1000000,
			"SELECT $1::int8 * 3 + $2::int4", "SELECT $1::text || '/' || $2::text",
			func(a int64, b int32) int64 { return a*3 + int64(b) }, slash, true)
		childErr := child.Wait()
		if err != nil {
			return err
		}
		check("8 connections x 150 rounds of cached statements: wrong results", bad, 0)
		check("... rows inserted by key ($1) and read back by key", rows, 8*30)
		check("... statement cache mode", modes(infos), "prepare")
		check("... statements prepared under pgx's lrupsc_ names", allNamesPrefixed(infos, "lrupsc_"), "yes")
		check("... each connection's cache holds its 4 statements", fmt.Sprint(infos[0].len, infos[7].len), "4 4")
		check("a second process with the same statement names for other texts, at the same time",
			strings.TrimSpace(childOut.String())+fmt.Sprintf(" (%v)", childErr), "bad 0 names yes (<nil>)")
		return nil
	})

	// 2. describe mode (unnamed statements, descriptions cached) and the simple protocol
	group("statement cache (describe)", func(ctx context.Context) error {
		bad, rows, infos, err := workload(ctx, "statement_cache_mode=describe", false, 4, 100, 2000000,
			"SELECT $1::int8 * 3 + $2::int4", "SELECT $1::text || '/' || $2::text",
			func(a int64, b int32) int64 { return a*3 + int64(b) }, slash, true)
		if err != nil {
			return err
		}
		check("describe mode: 4 connections x 100 rounds: wrong results", bad, 0)
		check("... rows inserted by key and read back", rows, 4*20)
		check("... statement cache mode", modes(infos), "describe")
		check("... statements are unnamed", allNamesPrefixed(infos, ""), "yes")
		return nil
	})
	group("simple protocol", func(ctx context.Context) error {
		bad, rows, _, err := workload(ctx, "", true, 4, 100, 2500000,
			"SELECT $1::int8 * 3 + $2::int4", "SELECT $1::text || '/' || $2::text",
			func(a int64, b int32) int64 { return a*3 + int64(b) }, slash, true)
		if err != nil {
			return err
		}
		check("PreferSimpleProtocol: 4 connections x 100 rounds: wrong results", bad, 0)
		check("... rows inserted by key and read back", rows, 4*20)
		c, err := connect(ctx, "", true)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", int64(2500000)).Scan(&n); err != nil {
			return err
		}
		check("... SELECT by key with an interpolated key", n, 1)
		return nil
	})

	// 3. pgx.Batch
	group("batch", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		b := &pgx.Batch{}
		for j := 0; j < 10; j++ {
			b.Queue("INSERT INTO "+table+" (id, v) VALUES ($1, $2)", int64(3000000+j), fmt.Sprintf("b%d", j))
			b.Queue("SELECT v FROM "+table+" WHERE id = $1", int64(3000000+j))
		}
		br := c.SendBatch(ctx, b)
		var got []string
		for j := 0; j < 10; j++ {
			tag, err := br.Exec()
			if err != nil {
				got = append(got, state(err))
			} else {
				got = append(got, tag.String())
			}
			var v string
			if err := br.QueryRow().Scan(&v); err != nil {
				got = append(got, state(err))
			} else {
				got = append(got, v)
			}
		}
		closeErr := br.Close()
		var want []string
		for j := 0; j < 10; j++ {
			want = append(want, "INSERT 0 1", fmt.Sprintf("b%d", j))
			addKey(int64(3000000+j), fmt.Sprintf("b%d", j))
		}
		check("a batch of 20 (10 INSERTs by key, each read back by key): the results", strings.Join(got, ","), strings.Join(want, ","))
		check("... closes cleanly", state(closeErr), "ok")
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id >= $1 AND id < $2", int64(3000000), int64(3000010)).Scan(&n); err != nil {
			return err
		}
		check("... the 10 rows are there afterwards", n, 10)

		// the same statements again (now in pgx's cache) with one failing at number 5
		b = &pgx.Batch{}
		for j := 0; j < 8; j++ {
			if j == 4 {
				b.Queue("INSERT INTO "+table+" (id, v) VALUES ($1, (100 / $2::int4)::text)", int64(3100000+j), int32(0))
			} else {
				b.Queue("INSERT INTO "+table+" (id, v) VALUES ($1, $2)", int64(3100000+j), "never")
			}
		}
		br = c.SendBatch(ctx, b)
		got = nil
		for j := 0; j < 8; j++ {
			_, err := br.Exec()
			got = append(got, state(err))
		}
		br.Close()
		check("a batch of 8 INSERTs whose 5th divides by zero: first five results", strings.Join(got[:5], ","), "ok,ok,ok,ok,22012")
		rest := "all errors"
		for _, s := range got[5:] {
			if s == "ok" {
				rest = strings.Join(got[5:], ",")
			}
		}
		check("... the statements after it report errors", rest, "all errors")
		var one int
		err := c.QueryRow(ctx, "SELECT 1").Scan(&one)
		check("... the connection works afterwards", state(err), "ok")
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id >= $1 AND id < $2", int64(3100000), int64(3100008)).Scan(&n); err != nil {
			return err
		}
		check("... none of its rows stay (one implicit transaction up to Sync)", n, 0)
		b = &pgx.Batch{}
		b.Queue("SELECT $1::int4 + 1", int32(41))
		b.Queue("SELECT v FROM "+table+" WHERE id = $1", int64(3000003))
		br = c.SendBatch(ctx, b)
		var x int32
		var v string
		e1 := br.QueryRow().Scan(&x)
		e2 := br.QueryRow().Scan(&v)
		br.Close()
		check("... a next batch works", fmt.Sprint(x, " ", v, " ", state(e1), " ", state(e2)), "42 b3 ok ok")
		return nil
	})

	// 4. CopyFrom: binary COPY
	group("copy", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		rows := make([][]interface{}, 10000)
		for i := range rows {
			var n interface{}
			if i%7 != 0 {
				n = int32(i)
			}
			rows[i] = []interface{}{int64(i + 1), fmt.Sprintf("copy %d \t\\ é", i), n}
		}
		n, err := c.CopyFrom(ctx, pgx.Identifier{copyTable}, []string{"id", "v", "n"}, pgx.CopyFromRows(rows))
		if err != nil {
			return err
		}
		check("CopyFrom of 10000 rows: count returned", n, 10000)
		var cnt, sum, nulls int64
		var sample string
		if err := c.QueryRow(ctx, "SELECT count(*), sum(id), count(*) FILTER (WHERE n IS NULL), max(v) FILTER (WHERE id = 5000) FROM "+copyTable).Scan(&cnt, &sum, &nulls, &sample); err != nil {
			return err
		}
		check("... rows in the table, their sum of ids, NULLs and a sample", fmt.Sprint(cnt, " ", sum, " ", nulls, " ", sample),
			fmt.Sprint(10000, " ", 10000*10001/2, " ", 1429, " ", "copy 4999 \t\\ é"))
		if sharded {
			// binary COPY split by key: each tuple to its key's shard (65_pgx.t checks
			// the placement with satisfies_hash_partition)
			brows := make([][]interface{}, 300)
			ids := make([]int64, len(brows))
			for i := range brows {
				ids[i] = int64(3200000 + i*7919)
				brows[i] = []interface{}{ids[i], fmt.Sprintf("bc%d é", i)}
			}
			n, err := c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "v"}, pgx.CopyFromRows(brows))
			check("binary CopyFrom into the sharded table: count returned", fmt.Sprint(n, " ", state(err)), "300 ok")
			var got int64
			var sample string
			err = c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = ANY($1)", ids).Scan(&got)
			if err == nil {
				err = c.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", ids[299]).Scan(&sample)
			}
			check("... every row readable through shardpool", fmt.Sprint(got, " ", sample, " ", state(err)), "300 bc299 é ok")
			for i, k := range ids {
				addKey(k, fmt.Sprintf("bc%d é", i))
			}
			_, err = c.CopyFrom(ctx, pgx.Identifier{table}, []string{"id", "v"}, pgx.CopyFromRows([][]interface{}{{int64(3300000), "x"}, {int64(3300001), nil}}))
			n2 := int64(-1)
			c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = ANY($1)", []int64{3300000, 3300001}).Scan(&n2)
			check("... a binary COPY failing on one shard (NULL into NOT NULL) keeps no row", fmt.Sprint(state(err), " ", n2), "23502 0")
		}
		var one int
		err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
		check("... the connection works afterwards", state(err), "ok")
		return nil
	})

	// 5. transactions
	group("transactions", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		const k, k2 = int64(4000000), int64(4000001)
		tx, err := c.BeginTx(ctx, pgx.TxOptions{})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, $2)", k, "outer"); err != nil {
			return err
		}
		var pid1, pid2 int32
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
			return err
		}
		sp, err := tx.Begin(ctx) // SAVEPOINT
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, "UPDATE "+table+" SET v = $2 WHERE id = $1", k, "inner"); err != nil {
			return err
		}
		if err := sp.Rollback(ctx); err != nil { // ROLLBACK TO SAVEPOINT
			return err
		}
		var v string
		if err := tx.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&v); err != nil {
			return err
		}
		check("nested tx rolled back: the savepoint's update is undone", v, "outer")
		sp, err = tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, "UPDATE "+table+" SET v = $2 WHERE id = $1", k, "inner2"); err != nil {
			return err
		}
		if err := sp.Commit(ctx); err != nil { // RELEASE SAVEPOINT
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
			return err
		}
		check("the transaction stays on one server connection", pid2 == pid1, true)
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		addKey(k, "inner2")
		if err := c.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&v); err != nil {
			return err
		}
		check("committed with the released savepoint's update", v, "inner2")

		tx, err = c.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, $2)", k2, "rolled back"); err != nil {
			return err
		}
		if err := tx.Rollback(ctx); err != nil {
			return err
		}
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", k2).Scan(&n); err != nil {
			return err
		}
		check("a rolled-back insert is gone", n, 0)

		tx, err = c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return err
		}
		err1 := tx.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&v)
		var ro string
		err2 := tx.QueryRow(ctx, "SELECT current_setting('transaction_read_only')").Scan(&ro)
		_, err3 := tx.Exec(ctx, "UPDATE "+table+" SET v = $2 WHERE id = $1", k, "read only?")
		tx.Rollback(ctx)
		check("a read-only tx reads, says so, and refuses a write", fmt.Sprint(v, " ", ro, " ", state(err1), " ", state(err2), " ", state(err3)),
			"inner2 on ok ok 25006")

		tx, err = c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
		if err != nil {
			return err
		}
		err1 = tx.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&v)
		var iso string
		err2 = tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation')").Scan(&iso)
		err3 = tx.Commit(ctx)
		check("a serializable tx", fmt.Sprint(iso, " ", state(err1), " ", state(err2), " ", state(err3)), "serializable ok ok ok")

		tx, err = c.Begin(ctx)
		if err != nil {
			return err
		}
		err1 = tx.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&v)
		var zero int32
		err2 = tx.QueryRow(ctx, "SELECT 1 / $1::int4", int32(0)).Scan(&zero)
		err3 = tx.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&v)
		err4 := tx.Rollback(ctx)
		check("an error inside a tx: the error, then 25P02, then rollback", fmt.Sprint(state(err1), " ", state(err2), " ", state(err3), " ", state(err4)),
			"ok 22012 25P02 ok")
		var one int
		err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
		check("... the connection works afterwards", state(err), "ok")
		return nil
	})

	// 6. values in binary format both ways (and in text with the simple protocol)
	roundTrip := func(name, extra string, simple bool) {
		group("round trip ("+name+")", func(ctx context.Context) error {
			c, err := connect(ctx, extra, simple)
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			ts := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC)
			// pgx's simple protocol writes a parameter as a literal in place of $n, and
			// -32768::int2 is -(32768::int2): out of range, with PostgreSQL too
			lo16, lo64 := int16(-32768), int64(-9223372036854775808)
			if simple {
				lo16, lo64 = lo16+1, lo64+1
			}
			inBytes := []byte{0, 1, 2, 0xfe, 0xff, '\\', '\''}
			inInts := []int64{1, -2, 9223372036854775807, -9223372036854775808}
			inTexts := []string{"a", "b c", "", `é"{},\`, "NULL"}
			var (
				i2    int16
				i4    int32
				i8    int64
				num   pgtype.Numeric
				txt   string
				bya   []byte
				uid   string
				tsz   time.Time
				js    string
				a8    []int64
				at    []string
				null  *int32
				f8    float64
				bl    bool
				dt    time.Time
				numTx string
			)
			err = c.QueryRow(ctx, "SELECT $1::int2, $2::int4, $3::int8, $4::numeric, $5::text, $6::bytea, $7::uuid, "+
				"$8::timestamptz, $9::jsonb, $10::int8[], $11::text[], $12::int4, $13::float8, $14::bool, $15::date",
				lo16, int32(2147483647), lo64, "-12345678901234567890.000123",
				"héllo\x01 wörld", inBytes, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ts, `{"b": [true, null], "a": 1.50}`,
				inInts, inTexts, nil, 1.5e-300, true, time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC),
			).Scan(&i2, &i4, &i8, &num, &txt, &bya, &uid, &tsz, &js, &a8, &at, &null, &f8, &bl, &dt)
			if err != nil {
				return err
			}
			check(name+": int2 int4 int8", fmt.Sprint(i2, " ", i4, " ", i8), fmt.Sprint(lo16, " 2147483647 ", lo64))
			if err := c.QueryRow(ctx, "SELECT $1::numeric::text", &num).Scan(&numTx); err != nil {
				return err
			}
			check(name+": numeric (back to the server and as text)", numTx, "-12345678901234567890.000123")
			check(name+": text", txt, "héllo\x01 wörld")
			check(name+": bytea", fmt.Sprintf("%x", bya), fmt.Sprintf("%x", inBytes))
			check(name+": uuid", uid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
			check(name+": timestamptz", tsz.UTC().Format(time.RFC3339Nano), "2024-02-29T23:59:58.123456Z")
			check(name+": jsonb", js, `{"a": 1.50, "b": [true, null]}`)
			check(name+": int8[]", fmt.Sprint(a8), fmt.Sprint(inInts))
			check(name+": text[]", fmt.Sprintf("%q", at), fmt.Sprintf("%q", inTexts))
			check(name+": NULL", null == nil, true)
			check(name+": float8 bool date", fmt.Sprint(f8, " ", bl, " ", dt.Format("2006-01-02")), "1.5e-300 true 1999-12-31")
			// the server's own text of what it received
			var srv string
			err = c.QueryRow(ctx, "SELECT concat_ws('|', $1::int8, encode($2::bytea, 'hex'), $3::uuid, "+
				"to_char($4::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), $5::int8[], $6::text[], $7::jsonb)",
				lo64, inBytes, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ts, inInts, inTexts, `{"x": "y"}`).Scan(&srv)
			if err != nil {
				return err
			}
			check(name+": the values as the server sees them", srv,
				fmt.Sprint(lo64)+`|000102feff5c27|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|2024-02-29 23:59:58.123456|`+
					`{1,-2,9223372036854775807,-9223372036854775808}|{a,"b c","","é\"{},\\","NULL"}|{"x": "y"}`)
			return nil
		})
	}
	roundTrip("prepare", "", false)
	roundTrip("describe", "statement_cache_mode=describe", false)
	roundTrip("simple", "", true)

	// 7. cancellation
	group("cancel", func(ctx context.Context) error {
		a := mustConnect(ctx)
		b := mustConnect(ctx)
		defer b.Close(ctx)
		tag := fmt.Sprintf("pgxcancel_%d_%d", os.Getpid(), time.Now().UnixNano())
		tctx, tcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		t0 := time.Now()
		_, err := a.Exec(tctx, "SELECT pg_sleep(5), '"+tag+"'")
		took := time.Since(t0)
		tcancel()
		check("pg_sleep(5) under a 200 ms context timeout: a timeout error", yesno(pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded)), "yes")
		check("... within 1.5 s", yesno(took < 1500*time.Millisecond), "yes")
		diag("the context timeout returned after %d ms: %v", took.Milliseconds(), err)
		// pgx closes the connection and sends a CancelRequest in the background
		select {
		case <-a.PgConn().CleanupDone():
		case <-time.After(10 * time.Second):
			diag("pgx's cancel of the timed out query did not finish within 10 s")
		}
		var active int64 = -1
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "+
				"AND query LIKE '%' || $1 || '%'", tag).Scan(&active); err != nil {
				return err
			}
			if active == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		check("... the server stops running it within 3 s (the cancel reached it)", active, 0)
		var one int
		err = b.QueryRow(ctx, "SELECT 1").Scan(&one)
		check("... a query on another connection works", state(err), "ok")

		// an explicit CancelRequest while another connection's query runs too
		a = mustConnect(ctx)
		defer a.Close(ctx)
		type res struct {
			err  error
			took time.Duration
		}
		ra, rb := make(chan res, 1), make(chan res, 1)
		go func() {
			t0 := time.Now()
			_, err := a.Exec(ctx, "SELECT pg_sleep(4), 'pgx_cancel_a'")
			ra <- res{err, time.Since(t0)}
		}()
		go func() {
			t0 := time.Now()
			_, err := b.Exec(ctx, "SELECT pg_sleep(1.5), 'pgx_cancel_b'")
			rb <- res{err, time.Since(t0)}
		}()
		time.Sleep(500 * time.Millisecond)
		cerr := a.PgConn().CancelRequest(ctx)
		r1, r2 := <-ra, <-rb
		check("PgConn().CancelRequest while two queries run: the request goes through", state(cerr), "ok")
		check("... the cancelled query ends with 57014 within 1.5 s", fmt.Sprint(state(r1.err), " ", yesno(r1.took < 1500*time.Millisecond)), "57014 yes")
		check("... the other connection's query runs to its end", fmt.Sprint(state(r2.err), " ", yesno(r2.took >= 1400*time.Millisecond)), "ok yes")
		var s string
		err = a.QueryRow(ctx, "SELECT 'after cancel'").Scan(&s)
		check("... the cancelled connection works afterwards", fmt.Sprint(state(err), " ", s), "ok after cancel")
		return nil
	})

	// 8. a 20 MB value both ways
	group("large value", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		const size = 20 * 1024 * 1024
		var s string
		if err := c.QueryRow(ctx, "SELECT repeat('x', $1::int4)", int32(size)).Scan(&s); err != nil {
			return err
		}
		check("a 20 MB text result: length", len(s), size)
		big := strings.Repeat("0123456789abcdef", size/16)
		var n int32
		var md5 bool
		if err := c.QueryRow(ctx, "SELECT length($1::text), md5($1::text) = md5(repeat('0123456789abcdef', $2::int4))", big, int32(size/16)).Scan(&n, &md5); err != nil {
			return err
		}
		check("a 20 MB text parameter: length, content", fmt.Sprint(n, " ", md5), fmt.Sprint(size, " true"))
		const k = int64(5000000)
		if _, err := c.Exec(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, $2)", k, big); err != nil {
			return err
		}
		s = ""
		if err := c.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", k).Scan(&s); err != nil {
			return err
		}
		check("a 20 MB row inserted and read back by key", yesno(s == big), "yes")
		tag, err := c.Exec(ctx, "DELETE FROM "+table+" WHERE id = $1", k)
		check("... deleted by key", fmt.Sprint(state(err), " ", tag), "ok DELETE 1")
		return nil
	})

	// 9. Ping, ParameterStatus, settings that stay with their connection
	group("session", func(ctx context.Context) error {
		c1, c2, c3 := mustConnect(ctx), mustConnect(ctx), mustConnect(ctx)
		defer c1.Close(ctx)
		defer c2.Close(ctx)
		defer c3.Close(ctx)
		check("Ping", state(c1.Ping(ctx)), "ok")
		ver := c1.PgConn().ParameterStatus("server_version")
		diag("server_version %q", ver)
		check("ParameterStatus(server_version) is set", yesno(ver != ""), "yes")
		if _, err := c1.Exec(ctx, "SET application_name = 'pgx_one'"); err != nil {
			return err
		}
		if _, err := c1.Exec(ctx, "SET search_path = pgx_one_schema, public"); err != nil {
			return err
		}
		if _, err := c2.Exec(ctx, "SET application_name = 'pgx_two'"); err != nil {
			return err
		}
		// busy connections meanwhile, so that c1..c3 change server connections
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := connect(ctx, "", false)
				if err != nil {
					return
				}
				defer c.Close(context.Background())
				for {
					select {
					case <-stop:
						return
					default:
					}
					var x int
					if c.QueryRow(ctx, "SELECT 1").Scan(&x) != nil {
						return
					}
				}
			}()
		}
		wrong := 0
		pids := map[int32]bool{}
		var last string
		for i := 0; i < 40; i++ {
			var a1, a2, a3, p1, p3 string
			var pid int32
			e1 := c1.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('search_path'), pg_backend_pid()").Scan(&a1, &p1, &pid)
			e2 := c2.QueryRow(ctx, "SHOW application_name").Scan(&a2)
			e3 := c3.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('search_path')").Scan(&a3, &p3)
			pids[pid] = true
			if e1 != nil || e2 != nil || e3 != nil || a1 != "pgx_one" || a2 != "pgx_two" || a3 == "pgx_one" || a3 == "pgx_two" ||
				p1 != "pgx_one_schema, public" || p3 == p1 {
				wrong++
				last = fmt.Sprint(a1, "|", a2, "|", a3, "|", p1, "|", p3, "|", e1, e2, e3)
			}
		}
		close(stop)
		wg.Wait()
		if last != "" {
			diag("last wrong round: %s", last)
		}
		diag("c1 ran on %d server connections", len(pids))
		check("SET application_name and search_path on c1, application_name on c2: rounds where a conn saw another's settings", wrong, 0)
		check("... ParameterStatus(application_name) of each conn",
			c1.PgConn().ParameterStatus("application_name")+" "+c2.PgConn().ParameterStatus("application_name"), "pgx_one pgx_two")
		return nil
	})

	// statements pgx evicts from a small cache: it sends `deallocate lrupsc_N_M`
	group("statement cache eviction", func(ctx context.Context) error {
		qs := []string{"SELECT $1::int4 + 1", "SELECT $1::int4 + 2", "SELECT $1::int4 + 3",
			"SELECT $1::int4 + 4", "SELECT $1::int4 + 5", "SELECT $1::int4 + 6"}
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad, done := 0, 0
		var firstErr error
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				c, err := connect(ctx, "statement_cache_capacity=3", false)
				if err == nil {
					defer c.Close(context.Background())
				}
				for r := 0; r < 20 && err == nil; r++ {
					for j, q := range qs {
						var x int32
						if err = c.QueryRow(ctx, q, int32(g*1000+r)).Scan(&x); err != nil {
							break
						}
						mu.Lock()
						if x != int32(g*1000+r+j+1) {
							bad++
						}
						done++
						mu.Unlock()
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}(g)
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		check("statement_cache_capacity=3, 6 statements in turn from 4 connections: executions, wrong results", fmt.Sprint(done, " ", bad), "480 0")
		return nil
	})

	// statements prepared under the application's own names, deallocated by name
	group("named statements", func(ctx context.Context) error {
		c1, c2 := mustConnect(ctx), mustConnect(ctx)
		defer c1.Close(ctx)
		defer c2.Close(ctx)
		const name = "Pgx Named.1" // deallocate "Pgx Named.1" needs the quotes
		if _, err := c1.Prepare(ctx, name, "SELECT $1::int4 * 2"); err != nil {
			return err
		}
		if _, err := c2.Prepare(ctx, name, "SELECT $1::text || '!'"); err != nil {
			return err
		}
		bad := 0
		for i := 0; i < 30; i++ {
			var x int32
			var s string
			if err := c1.QueryRow(ctx, name, int32(i)).Scan(&x); err != nil {
				return err
			}
			if err := c2.QueryRow(ctx, name, fmt.Sprint(i)).Scan(&s); err != nil {
				return err
			}
			if x != int32(2*i) || s != fmt.Sprint(i, "!") {
				bad++
			}
		}
		check("Prepare(name) on two connections, one name for two texts, 30 rounds: wrong results", bad, 0)
		_, err := c1.PgConn().Prepare(ctx, name, "SELECT 'again'", nil)
		check("preparing the name again without deallocating it: 42P05", state(err), "42P05")
		err = c1.Deallocate(ctx, name)
		check("Deallocate (deallocate \"Pgx Named.1\")", state(err), "ok")
		_, err = c1.Prepare(ctx, name, "SELECT $1::int4 * 3")
		var x int32
		if err == nil {
			err = c1.QueryRow(ctx, name, int32(7)).Scan(&x)
		}
		check("... the name can be prepared again, for another text", fmt.Sprint(state(err), " ", x), "ok 21")
		var s string
		err = c2.QueryRow(ctx, name, "still").Scan(&s)
		check("... the other connection's statement of that name is untouched", fmt.Sprint(state(err), " ", s), "ok still!")
		return nil
	})

	// a cached statement whose result type changes (ALTER TABLE ... ADD COLUMN under
	// SELECT *): PostgreSQL fails its next execution with 0A000 "cached plan must not
	// change result type"; pgx deallocates it and prepares it again on the next use
	group("schema change under cached statements", func(ctx context.Context) error {
		sc := table + "_sc"
		c0 := mustConnect(ctx)
		defer c0.Close(ctx)
		for _, q := range []string{"DROP TABLE IF EXISTS " + sc, "CREATE TABLE " + sc + " (id int, a int)", "INSERT INTO " + sc + " VALUES (1, 10)"} {
			if _, err := c0.Exec(ctx, q); err != nil {
				return err
			}
		}
		ncols := func(c *pgx.Conn) string {
			rows, err := c.Query(ctx, "SELECT * FROM "+sc)
			if err != nil {
				return state(err)
			}
			n := -1
			for rows.Next() {
				v, err := rows.Values()
				if err != nil {
					rows.Close()
					return state(err)
				}
				n = len(v)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return state(err)
			}
			return fmt.Sprint(n)
		}
		cs := make([]*pgx.Conn, 4)
		before := ""
		for i := range cs {
			cs[i] = mustConnect(ctx)
			defer cs[i].Close(ctx)
		}
		for r := 0; r < 3; r++ {
			for _, c := range cs {
				before += ncols(c)
			}
		}
		check("4 connections run SELECT * (a cached statement) 3 times each: columns", before, strings.Repeat("2", 12))
		if _, err := c0.Exec(ctx, "ALTER TABLE "+sc+" ADD COLUMN b text DEFAULT 'new'"); err != nil {
			return err
		}
		var first, later []string
		for _, c := range cs {
			first = append(first, ncols(c))
		}
		for r := 0; r < 3; r++ {
			for _, c := range cs {
				later = append(later, ncols(c))
			}
		}
		diag("after ALTER TABLE: first executions %v, later %v", first, later)
		okFirst := "yes"
		for _, f := range first {
			if f != "0A000" && f != "3" {
				okFirst = strings.Join(first, ",")
			}
		}
		check("after ALTER TABLE ADD COLUMN: each connection's first execution gives 0A000 or the 3 columns", okFirst, "yes")
		check("after ALTER TABLE ADD COLUMN: every later execution gives the 3 columns", strings.Join(later, ","), strings.TrimSuffix(strings.Repeat("3,", 12), ","))
		_, err := c0.Exec(ctx, "DROP TABLE "+sc)
		return err
	})

	// big batches: results flowing back while pgx still writes, and (sharded) 1000
	// INSERTs by key split over the shards
	group("big batches", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		b := &pgx.Batch{}
		for i := 0; i < 3000; i++ {
			b.Queue("SELECT $1::int8, repeat('x', 1000)", int64(i))
		}
		br := c.SendBatch(ctx, b)
		bad := 0
		var firstErr error
		for i := 0; i < 3000; i++ {
			var x int64
			var s string
			if err := br.QueryRow().Scan(&x, &s); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				bad++
			} else if x != int64(i) || len(s) != 1000 {
				bad++
			}
		}
		closeErr := br.Close()
		check("a batch of 3000 SELECTs of 1 kB each: wrong results, first error, close", fmt.Sprint(bad, " ", state(firstErr), " ", state(closeErr)), "0 ok ok")
		b = &pgx.Batch{}
		for i := 0; i < 1000; i++ {
			b.Queue("INSERT INTO "+table+" (id, v) VALUES ($1, $2)", int64(6000000+i), fmt.Sprintf("big%d", i))
		}
		br = c.SendBatch(ctx, b)
		bad, firstErr = 0, nil
		for i := 0; i < 1000; i++ {
			if _, err := br.Exec(); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				bad++
			}
		}
		closeErr = br.Close()
		check("a batch of 1000 INSERTs by key: failed ones, first error, close", fmt.Sprint(bad, " ", state(firstErr), " ", state(closeErr)), "0 ok ok")
		if bad == 0 {
			for i := 0; i < 1000; i++ {
				addKey(int64(6000000+i), fmt.Sprintf("big%d", i))
			}
		}
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id >= $1 AND id < $2", int64(6000000), int64(6001000)).Scan(&n); err != nil {
			return err
		}
		check("... the rows are there", n, 1000)
		return nil
	})

	// errors from Parse: pgx's Prepare fails, the connection goes on
	group("errors", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		var x int
		e1 := c.QueryRow(ctx, "SELECT * FROM pgx_no_such_table WHERE 1 = $1", 1).Scan(&x)
		e2 := c.QueryRow(ctx, "SELEC $1::int4", 1).Scan(&x)
		e3 := c.QueryRow(ctx, "SELECT * FROM pgx_no_such_table WHERE 1 = $1", 1).Scan(&x)
		e4 := c.QueryRow(ctx, "SELECT $1::int4", 5).Scan(&x)
		check("unknown table, syntax error, unknown table again, then a good statement", fmt.Sprint(state(e1), " ", state(e2), " ", state(e3), " ", state(e4), " ", x),
			"42P01 42601 42P01 ok 5")
		return nil
	})

	// a read by several keys (on every shard when sharded) cancelled by a context timeout
	group("cancel of a read by several keys", func(ctx context.Context) error {
		nshards := 1
		if sharded {
			nshards = 2
		}
		c := mustConnect(ctx)
		probe := mustConnect(ctx)
		defer probe.Close(ctx)
		tag := fmt.Sprintf("pgxcancelmany_%d_%d", os.Getpid(), time.Now().UnixNano())
		var ks []int64
		for j := 0; j < 10; j++ {
			ks = append(ks, int64(3000000+j))
		}
		tctx, tcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		t0 := time.Now()
		_, err := c.Exec(tctx, "SELECT id, pg_sleep(1), '"+tag+"' FROM "+table+" WHERE id = ANY($1)", ks)
		took := time.Since(t0)
		tcancel()
		check("SELECT ... WHERE id = ANY($1) sleeping 1 s a row, under a 300 ms timeout: a timeout error within 1.5 s",
			fmt.Sprint(yesno(pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded)), " ", yesno(took < 1500*time.Millisecond)), "yes yes")
		select {
		case <-c.PgConn().CleanupDone():
		case <-time.After(10 * time.Second):
		}
		for s := 0; s < nshards; s++ {
			var active int64 = -1
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				if err := probe.QueryRow(ctx, fmt.Sprintf("/* shard: %d */ SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "+
					"AND pid <> pg_backend_pid() AND query LIKE '%%' || $1 || '%%'", s), tag).Scan(&active); err != nil {
					return err
				}
				if active == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			check(fmt.Sprintf("... shard %d stops running it within 3 s", s), active, 0)
		}
		return nil
	})

	// 10. reads without a key (fan-out when sharded), with a cached prepared statement
	group("reads of every row", func(ctx context.Context) error {
		keysMu.Lock()
		var want []int64
		for k := range keys {
			want = append(want, k)
		}
		keysMu.Unlock()
		sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad := 0
		var firstErr error
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := connect(ctx, "", false)
				if err == nil {
					defer c.Close(context.Background())
				}
				for r := 0; r < 5 && err == nil; r++ {
					var rows pgx.Rows
					rows, err = c.Query(ctx, "SELECT id, v FROM "+table+" WHERE id >= $1 ORDER BY id", int64(0))
					if err != nil {
						break
					}
					var got []int64
					ok := true
					for rows.Next() {
						var id int64
						var v string
						if err = rows.Scan(&id, &v); err != nil {
							break
						}
						got = append(got, id)
						keysMu.Lock()
						if keys[id] != v {
							ok = false
						}
						keysMu.Unlock()
					}
					rows.Close()
					if err == nil {
						err = rows.Err()
					}
					if err == nil && (!ok || fmt.Sprint(got) != fmt.Sprint(want)) {
						mu.Lock()
						bad++
						mu.Unlock()
						diag("rows read without a key: %d, expected %d", len(got), len(want))
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		check(fmt.Sprintf("SELECT without a key, ORDER BY id, from 4 connections x 5: all %d rows in order", len(want)), bad, 0)
		c := mustConnect(ctx)
		defer c.Close(ctx)
		var n, sum, wsum int64
		if err := c.QueryRow(ctx, "SELECT count(*), sum(id) FROM "+table).Scan(&n, &sum); err != nil {
			return err
		}
		for _, k := range want {
			wsum += k
		}
		check("count(*) and sum(id) without a key", fmt.Sprint(n, " ", sum), fmt.Sprint(len(want), " ", wsum))
		var top []int64
		rows, err := c.Query(ctx, "SELECT id FROM "+table+" ORDER BY id DESC LIMIT $1", int64(3))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			top = append(top, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		check("ORDER BY id DESC LIMIT $1", fmt.Sprint(top), fmt.Sprint([]int64{want[len(want)-1], want[len(want)-2], want[len(want)-3]}))
		outMu.Lock()
		fmt.Printf("rows\t%d\n", len(want))
		outMu.Unlock()
		return nil
	})

	group("cleanup", func(ctx context.Context) error {
		c := mustConnect(ctx)
		defer c.Close(ctx)
		if !sharded {
			if _, err := c.Exec(ctx, "DROP TABLE "+table); err != nil {
				return err
			}
		}
		_, err := c.Exec(ctx, "DROP TABLE "+copyTable)
		return err
	})
	fmt.Println("end")
}
