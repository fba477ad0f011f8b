/*
 * JdbcTest.java - pgjdbc (Debian's libpostgresql-jdbc-java) against shardpool in
 * transaction pooling; driven by test/integration/60_jdbc.t.
 *
 *   java -cp DIR:/usr/share/java/postgresql.jar JdbcTest URL TABLE
 *
 * URL carries the user, password and prepareThreshold. TABLE is a name unique to the
 * run; the program creates and drops it. Every check prints one line
 *   check<TAB>description<TAB>got<TAB>expected
 * which the .t turns into a TAP `is`; anything else printed is diagnostics. The last
 * line is `end` when the program got through all its checks (a crash or hang shows
 * as a missing `end`). -Donly=REGEX runs only the groups whose names match, -Dskip=REGEX
 * leaves those out (the groups "connect" and "drop table" always run).
 *
 * What this deliberately does not do: judge shardpool's own log or its pools; it sees
 * only what a Java application would see.
 */
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;

public class JdbcTest {
	static String url;
	static String table;

	static synchronized void check(String desc, Object got, Object expected)
	{
		String g = String.valueOf(got).replace('\t', ' ').replace('\n', ' ');
		String e = String.valueOf(expected).replace('\t', ' ').replace('\n', ' ');
		System.out.println("check\t" + desc + "\t" + g + "\t" + e);
		System.out.flush();
	}

	static synchronized void diag(String s)
	{
		System.out.println(s.replace('\n', ' '));
		System.out.flush();
	}

	static Connection connect() throws SQLException
	{
		return DriverManager.getConnection(url);
	}

	/* a short description of a failure: SQLSTATE and message */
	static String describe(Throwable t)
	{
		if (t instanceof SQLException)
			return "SQLException " + ((SQLException)t).getSQLState() + ": " + t.getMessage();
		return t.toString();
	}

	interface Step {
		void run() throws Exception;
	}

	/* one group of checks; an exception fails the group instead of killing the run */
	static void group(String name, Step s)
	{
		String only = System.getProperty("only"), skip = System.getProperty("skip");
		boolean always = name.equals("connect") || name.equals("drop table");
		if (!always && ((only != null && !name.matches(".*(" + only + ").*")) ||
				(skip != null && name.matches(".*(" + skip + ").*"))))
			return;
		long t0 = System.nanoTime();
		try {
			s.run();
		} catch (Throwable t) {
			check(name + ": completes without an exception", describe(t), "no exception");
		}
		diag(name + " took " + (System.nanoTime() - t0) / 1000000 + " ms");
	}

	static String one(Connection c, String sql) throws SQLException
	{
		try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
			return rs.next() ? rs.getString(1) : "(no row)";
		}
	}

	public static void main(String[] args) throws Exception
	{
		url = args[0];
		table = args[1];
		DriverManager.setLoginTimeout(20);

		group("connect", () -> {
			try (Connection c = connect()) {
				check("SELECT 1 through shardpool", one(c, "SELECT 1"), "1");
				check("current_user is app", one(c, "SELECT current_user"), "app");
				DatabaseMetaData md = c.getMetaData();
				check("driver is pgjdbc", md.getDriverName(), "PostgreSQL JDBC Driver");
				check("server major version", md.getDatabaseMajorVersion(), 15);
				try (Statement st = c.createStatement()) {
					st.execute("DROP TABLE IF EXISTS " + table);
					st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, v text NOT NULL, "
						   + "big bigint, ts timestamp, b bytea, f float8, n numeric)");
				}
			}
		});

		group("prepared statements, 10 threads", JdbcTest::concurrentPrepared);
		group("batch insert", JdbcTest::batchInsert);
		group("transactions", JdbcTest::transactions);
		group("metadata", JdbcTest::metadata);
		group("session parameters", JdbcTest::sessionParameters);
		group("binary round trip", JdbcTest::binaryRoundTrip);
		group("errors", JdbcTest::errors);
		group("query timeout (cancel)", JdbcTest::queryTimeout);
		group("COPY through CopyManager", JdbcTest::copyManager);
		group("cursor with fetchSize", JdbcTest::fetchSize);
		group("startup options", JdbcTest::startupOptions);
		group("SET in a reused prepared statement", JdbcTest::preparedSet);
		group("large batch and large values", JdbcTest::largeTraffic);
		/* these leave shardpool's state damaged when they fail: the .t runs each alone */
		group("DEALLOCATE ALL and DISCARD ALL", JdbcTest::deallocateAll);
		group("plan invalidation after ALTER TABLE", JdbcTest::planInvalidation);
		group("big message while waiting for a server", JdbcTest::bigMessageWhileWaiting);

		group("drop table", () -> {
			try (Connection c = connect(); Statement st = c.createStatement()) {
				/* a transaction stuck in shardpool may still hold a lock on it */
				st.execute("SET lock_timeout = '2s'");
				st.execute("DROP TABLE " + table);
			}
		});
		System.out.println("end");
	}

	/*
	 * 10 threads, each with its own connection, 1000 executions each of three
	 * prepared statements with results checked. Every pgjdbc connection names its
	 * server-side statements S_1, S_2, ... so the same names mean different SQL on
	 * different clients, all over two server connections.
	 */
	static void concurrentPrepared() throws Exception
	{
		final int threads = 10, iters = 1000;
		AtomicInteger good = new AtomicInteger(), bad = new AtomicInteger();
		ConcurrentLinkedQueue<String> errs = new ConcurrentLinkedQueue<>();
		ExecutorService ex = Executors.newFixedThreadPool(threads);
		List<Future<?>> fs = new ArrayList<>();
		for (int t = 0; t < threads; t++) {
			final int tid = t;
			fs.add(ex.submit(() -> {
				try (Connection c = connect()) {
					/* statements differ per thread in order, so S_n differ */
					String[] sqls = {"SELECT ?::int * 2 + " + (tid % 3),
							 "SELECT ?::text || '-' || ?::int",
							 "SELECT count(*) FROM generate_series(1, ?::int)"};
					if (tid % 2 == 1)
						Collections.reverse(Arrays.asList(sqls));
					PreparedStatement[] ps = new PreparedStatement[3];
					for (int k = 0; k < 3; k++)
						ps[k] = c.prepareStatement(sqls[k]);
					for (int i = 0; i < iters; i++) {
						for (int k = 0; k < 3; k++) {
							String sql = sqls[k], exp, got;
							PreparedStatement p = ps[k];
							if (sql.startsWith("SELECT ?::int")) {
								p.setInt(1, i);
								exp = String.valueOf(i * 2 + tid % 3);
							} else if (sql.startsWith("SELECT ?::text")) {
								p.setString(1, "t" + tid);
								p.setInt(2, i);
								exp = "t" + tid + "-" + i;
							} else {
								p.setInt(1, i % 50);
								exp = String.valueOf(i % 50);
							}
							try (ResultSet rs = p.executeQuery()) {
								got = rs.next() ? rs.getString(1) : "(no row)";
							}
							if (got.equals(exp)) {
								good.incrementAndGet();
							} else {
								if (bad.incrementAndGet() <= 5)
									errs.add("thread " + tid + " iteration " + i + " [" + sql + "]: got " + got + ", expected " + exp);
							}
						}
						/* now and then a statement prepared, used and closed at once */
						if (i % 100 == 0) {
							try (PreparedStatement p = c.prepareStatement("SELECT ?::int + " + (1000 + i))) {
								p.setInt(1, tid);
								try (ResultSet rs = p.executeQuery()) {
									rs.next();
									if (rs.getInt(1) == tid + 1000 + i)
										good.incrementAndGet();
									else if (bad.incrementAndGet() <= 5)
										errs.add("thread " + tid + " one-off " + i + ": got " + rs.getInt(1));
								}
							}
						}
					}
				} catch (Throwable e) {
					bad.incrementAndGet();
					errs.add("thread " + tid + ": " + describe(e));
				}
				return null;
			}));
		}
		for (Future<?> f : fs)
			f.get(120, TimeUnit.SECONDS);
		ex.shutdown();
		for (String e : errs)
			diag(e);
		int expected = threads * (iters * 3 + iters / 100);
		check("10 threads x 1000 prepared executions: all results right", good.get(), expected);
		check("10 threads x 1000 prepared executions: no wrong result or error", bad.get(), 0);
	}

	static void batchInsert() throws Exception
	{
		try (Connection c = connect()) {
			int n = 500;
			int[] counts;
			try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)")) {
				for (int i = 1; i <= n; i++) {
					p.setInt(1, i);
					p.setString(2, "row" + i);
					p.addBatch();
				}
				counts = p.executeBatch();
			}
			int sum = 0;
			for (int x : counts)
				sum += (x == Statement.SUCCESS_NO_INFO) ? 1 : x;
			check("executeBatch returns one count per row", counts.length, n);
			check("executeBatch counts add up to the rows", sum, n);
			check("the table holds the batch's rows", one(c, "SELECT count(*) FROM " + table), n);
			check("the batch's rows are intact", one(c, "SELECT sum(id) || ':' || count(DISTINCT v) FROM " + table),
			      (n * (n + 1) / 2) + ":" + n);

			/* a batch in a transaction, executed twice, then rolled back */
			c.setAutoCommit(false);
			try (PreparedStatement p = c.prepareStatement("UPDATE " + table + " SET v = v || ? WHERE id = ?")) {
				for (int round = 0; round < 2; round++) {
					for (int i = 1; i <= 100; i++) {
						p.setString(1, "x");
						p.setInt(2, i);
						p.addBatch();
					}
					int[] u = p.executeBatch();
					check("batch update round " + round + " updated 100 rows", u.length, 100);
				}
			}
			check("batch updates are visible inside the transaction",
			      one(c, "SELECT count(*) FROM " + table + " WHERE v LIKE '%xx'"), 100);
			c.rollback();
			c.setAutoCommit(true);
			check("rolled-back batch left no trace", one(c, "SELECT count(*) FROM " + table + " WHERE v LIKE '%x'"), 0);
		}
	}

	static void transactions() throws Exception
	{
		try (Connection c = connect(); Connection other = connect()) {
			c.setAutoCommit(false);
			String pid1 = one(c, "SELECT pg_backend_pid()");
			try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)")) {
				p.setInt(1, 10001);
				p.setString(2, "committed");
				p.executeUpdate();
			}
			check("a transaction stays on one server connection", one(c, "SELECT pg_backend_pid()"), pid1);
			check("uncommitted row is invisible to another connection",
			      one(other, "SELECT count(*) FROM " + table + " WHERE id = 10001"), 0);
			c.commit();
			check("committed row is visible to another connection",
			      one(other, "SELECT v FROM " + table + " WHERE id = 10001"), "committed");

			try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)")) {
				p.setInt(1, 10002);
				p.setString(2, "rolled back");
				p.executeUpdate();
			}
			check("row is visible inside its own transaction",
			      one(c, "SELECT count(*) FROM " + table + " WHERE id = 10002"), 1);
			c.rollback();
			check("rolled-back row is gone", one(other, "SELECT count(*) FROM " + table + " WHERE id = 10002"), 0);

			/* a savepoint inside a transaction */
			Savepoint sp;
			try (Statement st = c.createStatement()) {
				st.executeUpdate("INSERT INTO " + table + " (id, v) VALUES (10003, 'kept')");
				sp = c.setSavepoint();
				st.executeUpdate("INSERT INTO " + table + " (id, v) VALUES (10004, 'dropped')");
			}
			c.rollback(sp);
			c.commit();
			c.setAutoCommit(true);
			check("savepoint rollback keeps the earlier row and drops the later",
			      one(other, "SELECT string_agg(id::text, ',' ORDER BY id) FROM " + table + " WHERE id IN (10003, 10004)"),
			      "10003");

			/* a read-only transaction (pgjdbc sends BEGIN READ ONLY) */
			c.setAutoCommit(false);
			c.setReadOnly(true);
			check("read-only transaction is read only", one(c, "SHOW transaction_read_only"), "on");
			c.commit();
			c.setReadOnly(false);
			c.setAutoCommit(true);
			check("after it, transactions are read-write again", one(c, "SHOW transaction_read_only"), "off");
		}
	}

	static void metadata() throws Exception
	{
		try (Connection c = connect()) {
			DatabaseMetaData md = c.getMetaData();
			check("getUserName", md.getUserName(), "app");
			check("getURL names the server connected to", md.getURL().replaceAll("[/?][^:]*$", ""), url.replaceAll("[/?][^:]*$", ""));
			int found = 0;
			try (ResultSet rs = md.getTables(null, "public", table, new String[] {"TABLE"})) {
				while (rs.next())
					found++;
			}
			check("getTables finds the test table", found, 1);
			List<String> cols = new ArrayList<>();
			try (ResultSet rs = md.getColumns(null, "public", table, null)) {
				while (rs.next())
					cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
			}
			check("getColumns lists the columns in order", String.join(",", cols),
			      "id:int4,v:text,big:int8,ts:timestamp,b:bytea,f:float8,n:numeric");
			List<String> pk = new ArrayList<>();
			try (ResultSet rs = md.getPrimaryKeys(null, "public", table)) {
				while (rs.next())
					pk.add(rs.getString("COLUMN_NAME"));
			}
			check("getPrimaryKeys", String.join(",", pk), "id");
			try (PreparedStatement p = c.prepareStatement("SELECT id, v, ts FROM " + table + " WHERE id = ?")) {
				ResultSetMetaData rmd = p.getMetaData();
				check("PreparedStatement.getMetaData column count", rmd.getColumnCount(), 3);
				check("PreparedStatement.getMetaData column types",
				      rmd.getColumnTypeName(1) + "," + rmd.getColumnTypeName(2) + "," + rmd.getColumnTypeName(3),
				      "int4,text,timestamp");
				ParameterMetaData pmd = p.getParameterMetaData();
				check("getParameterMetaData type", pmd.getParameterTypeName(1), "int4");
			}
		}
	}

	/*
	 * Two connections set different values of the same parameters and take turns
	 * with a third connection hogging nothing: with two server connections, each
	 * client's queries land on whichever server is free, and must still see their own
	 * settings.
	 */
	static void sessionParameters() throws Exception
	{
		try (Connection a = connect(); Connection b = connect()) {
			try (Statement st = a.createStatement()) {
				st.execute("SET application_name = 'jdbc_a'");
				st.execute("SET TimeZone = 'Asia/Tokyo'");
				st.execute("SET statement_timeout = '12s'");
			}
			try (Statement st = b.createStatement()) {
				st.execute("SET application_name = 'jdbc_b'");
				st.execute("SET TimeZone = 'America/New_York'");
			}
			check("SET application_name, read back with SHOW", one(a, "SHOW application_name"), "jdbc_a");
			check("SET TimeZone, read back with SHOW", one(a, "SHOW TimeZone"), "Asia/Tokyo");
			check("SET statement_timeout, read back with SHOW", one(a, "SHOW statement_timeout"), "12s");
			int wrong = 0;
			String first = null;
			for (int i = 0; i < 200; i++) {
				Connection c = (i % 2 == 0) ? a : b;
				String exp = (i % 2 == 0) ? "jdbc_a Asia/Tokyo" : "jdbc_b America/New_York";
				String got;
				try (PreparedStatement p = c.prepareStatement(
					     "SELECT current_setting('application_name') || ' ' || current_setting('TimeZone') || ?::text")) {
					p.setString(1, "");
					try (ResultSet rs = p.executeQuery()) {
						rs.next();
						got = rs.getString(1);
					}
				}
				if (!got.equals(exp)) {
					wrong++;
					if (first == null)
						first = "query " + i + ": got '" + got + "', expected '" + exp + "'";
				}
			}
			check("200 alternating queries each see their own client's settings", wrong + (first == null ? "" : " (" + first + ")"), 0);
			check("statement_timeout set by SET survives pooling", one(a, "SHOW statement_timeout"), "12s");
			check("the other client does not see statement_timeout", one(b, "SHOW statement_timeout"), "0");
			/* pgjdbc's own view of the time zone comes from ParameterStatus */
			try (Statement st = a.createStatement()) {
				st.execute("RESET TimeZone");
			}
			check("RESET TimeZone goes back to the server default", one(a, "SHOW TimeZone").equals("Asia/Tokyo"), false);
		}
	}

	/*
	 * pgjdbc asks for binary results for int4, int8, float8, timestamp, bytea and
	 * others once a statement is prepared on the server, and sends binary parameters
	 * for some. The same rows, written and read back over and over.
	 */
	static void binaryRoundTrip() throws Exception
	{
		try (Connection c = connect()) {
			Random rnd = new Random(42);
			int mismatches = 0;
			String first = null;
			try (PreparedStatement ins = c.prepareStatement(
				     "INSERT INTO " + table + " (id, v, big, ts, b, f, n) VALUES (?, ?, ?, ?, ?, ?, ?)");
			     PreparedStatement sel = c.prepareStatement(
				     "SELECT id, v, big, ts, b, f, n FROM " + table + " WHERE id = ?")) {
				for (int i = 0; i < 50; i++) {
					int id = 20000 + i;
					long big = (i % 2 == 0 ? -1L : 1L) * (Long.MAX_VALUE - i);
					Timestamp ts = Timestamp.valueOf("2024-02-29 12:34:56.123456");
					ts.setTime(ts.getTime() + i * 86400000L);
					ts.setNanos(123456000 + i * 1000);
					byte[] b = new byte[i * 37 % 3000];
					rnd.nextBytes(b);
					if (b.length > 2)
						b[1] = 0;
					double f = i * Math.PI * 1e10;
					java.math.BigDecimal n = new java.math.BigDecimal("12345678901234567890.0123456789").add(java.math.BigDecimal.valueOf(i));
					String v = "välüe ✓ " + i;
					ins.setInt(1, id);
					ins.setString(2, v);
					ins.setLong(3, big);
					ins.setTimestamp(4, ts);
					ins.setBytes(5, b);
					ins.setDouble(6, f);
					ins.setBigDecimal(7, n);
					ins.executeUpdate();
					sel.setInt(1, id);
					try (ResultSet rs = sel.executeQuery()) {
						if (!rs.next()) {
							mismatches++;
							if (first == null)
								first = "row " + id + " missing";
							continue;
						}
						String why = null;
						if (rs.getInt(1) != id)
							why = "id " + rs.getInt(1);
						else if (!rs.getString(2).equals(v))
							why = "text " + rs.getString(2);
						else if (rs.getLong(3) != big)
							why = "bigint " + rs.getLong(3) + " != " + big;
						else if (!rs.getTimestamp(4).equals(ts))
							why = "timestamp " + rs.getTimestamp(4) + " != " + ts;
						else if (!Arrays.equals(rs.getBytes(5), b))
							why = "bytea of " + rs.getBytes(5).length + " bytes != " + b.length;
						else if (rs.getDouble(6) != f)
							why = "float8 " + rs.getDouble(6) + " != " + f;
						else if (rs.getBigDecimal(7).compareTo(n) != 0)
							why = "numeric " + rs.getBigDecimal(7) + " != " + n;
						if (why != null) {
							mismatches++;
							if (first == null)
								first = "row " + id + ": " + why;
						}
					}
				}
			}
			check("50 rows of int, bigint, timestamp, bytea, float8, numeric, text round-trip", mismatches + (first == null ? "" : " (" + first + ")"), 0);
			/* a server-side check that what arrived is what was meant */
			check("server sees the bytea lengths that were sent",
			      one(c, "SELECT sum(length(b)) FROM " + table + " WHERE id >= 20000"),
			      (long)java.util.stream.IntStream.range(0, 50).map(i -> i * 37 % 3000).sum());
			check("server sees the timestamps that were sent",
			      one(c, "SELECT ts FROM " + table + " WHERE id = 20003"), "2024-03-03 12:34:56.123459");
		}
	}

	static void errors() throws Exception
	{
		try (Connection c = connect()) {
			String state = "none";
			try (Statement st = c.createStatement()) {
				st.executeQuery("SELECT 1/0");
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			check("division by zero raises 22012", state, "22012");
			check("the connection works after an error", one(c, "SELECT 'alive'"), "alive");

			/* an error from a prepared statement that has been used before */
			try (PreparedStatement p = c.prepareStatement("SELECT 100 / ?::int")) {
				int okRuns = 0;
				for (int i = 1; i <= 10; i++) {
					p.setInt(1, i);
					try (ResultSet rs = p.executeQuery()) {
						rs.next();
						if (rs.getInt(1) == 100 / i)
							okRuns++;
					}
				}
				check("prepared statement runs before the error", okRuns, 10);
				state = "none";
				p.setInt(1, 0);
				try (ResultSet rs = p.executeQuery()) {
					rs.next();
				} catch (SQLException e) {
					state = e.getSQLState();
				}
				check("prepared statement with a zero divisor raises 22012", state, "22012");
				p.setInt(1, 4);
				try (ResultSet rs = p.executeQuery()) {
					rs.next();
					check("the same prepared statement works after its error", rs.getInt(1), 25);
				}
			}

			/* a syntax error in a statement pgjdbc wants to prepare */
			state = "none";
			try (PreparedStatement p = c.prepareStatement("SELEC ?::int")) {
				p.setInt(1, 1);
				p.executeQuery();
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			check("syntax error raises 42601", state, "42601");
			check("the connection works after a syntax error", one(c, "SELECT 2"), "2");

			/* an error inside a transaction aborts it until rollback */
			c.setAutoCommit(false);
			state = "none";
			try (Statement st = c.createStatement()) {
				st.executeUpdate("INSERT INTO " + table + " (id, v) VALUES (30001, 'a')");
				st.executeUpdate("INSERT INTO " + table + " (id, v) VALUES (30001, 'dup')");
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			check("duplicate key raises 23505", state, "23505");
			state = "none";
			try (Statement st = c.createStatement()) {
				st.executeQuery("SELECT 1");
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			check("the aborted transaction refuses statements with 25P02", state, "25P02");
			c.rollback();
			c.setAutoCommit(true);
			check("after rollback the connection works", one(c, "SELECT count(*) FROM " + table + " WHERE id = 30001"), 0);

			/* many errors in a row, interleaved with good statements */
			int fine = 0;
			for (int i = 0; i < 100; i++) {
				try (PreparedStatement p = c.prepareStatement("SELECT 1 / ?::int")) {
					p.setInt(1, i % 2);
					try (ResultSet rs = p.executeQuery()) {
						rs.next();
						if (i % 2 == 1 && rs.getInt(1) == 1)
							fine++;
					}
				} catch (SQLException e) {
					if (i % 2 == 0 && "22012".equals(e.getSQLState()))
						fine++;
				}
			}
			check("100 alternating good and failing prepared executions behave", fine, 100);
		}
	}

	/* Statement.setQueryTimeout: pgjdbc sends a CancelRequest on a new connection. */
	static void queryTimeout() throws Exception
	{
		try (Connection c = connect(); Connection other = connect()) {
			String state = "none";
			long t0 = System.nanoTime();
			try (Statement st = c.createStatement()) {
				st.setQueryTimeout(1);
				st.executeQuery("SELECT pg_sleep(10)");
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			long ms = (System.nanoTime() - t0) / 1000000;
			check("a query past its timeout is cancelled with 57014", state, "57014");
			check("the cancel arrives within 5 s", ms < 5000, true);
			check("the connection works after a cancel", one(c, "SELECT 'after cancel'"), "after cancel");
			/* a cancel must hit the canceller's own query, not another client's */
			final String[] otherResult = {"none"};
			Thread t = new Thread(() -> {
				try (Statement st = other.createStatement()) {
					otherResult[0] = one(other, "SELECT pg_sleep(2)::text || 'slept'");
				} catch (SQLException e) {
					otherResult[0] = describe(e);
				}
			});
			t.start();
			Thread.sleep(300);
			state = "none";
			try (Statement st = c.createStatement()) {
				st.setQueryTimeout(1);
				st.executeQuery("SELECT pg_sleep(10)");
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			t.join(20000);
			check("second cancel hits its own query", state, "57014");
			check("another client's query running meanwhile is not cancelled", otherResult[0], "slept");
		}
	}

	static void copyManager() throws Exception
	{
		try (Connection c = connect()) {
			org.postgresql.copy.CopyManager cm = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
			StringBuilder sb = new StringBuilder();
			int n = 20000;
			for (int i = 0; i < n; i++)
				sb.append(40000 + i).append('\t').append("copy row ").append(i).append(" \\\\ tab\\there\n");
			long rows = cm.copyIn("COPY " + table + " (id, v) FROM STDIN", new java.io.StringReader(sb.toString()));
			check("COPY FROM STDIN reports its rows", rows, (long)n);
			check("the copied rows are in the table",
			      one(c, "SELECT count(*) || ':' || sum(id - 40000) FROM " + table + " WHERE id >= 40000 AND id < 60000"),
			      n + ":" + ((long)n * (n - 1) / 2));
			check("COPY kept backslashes and tabs", one(c, "SELECT v FROM " + table + " WHERE id = 40007"), "copy row 7 \\ tab\there".replace('\t', ' '));
			java.io.StringWriter w = new java.io.StringWriter();
			long out = cm.copyOut("COPY (SELECT id, v FROM " + table + " WHERE id >= 40000 AND id < 60000 ORDER BY id) TO STDOUT", w);
			check("COPY TO STDOUT reports its rows", out, (long)n);
			check("COPY TO STDOUT gives back what went in", w.toString().equals(sb.toString()), true);
			/* a COPY that fails half way, then the connection goes on */
			String state = "none";
			try {
				cm.copyIn("COPY " + table + " (id, v) FROM STDIN", new java.io.StringReader("70001\ta\n70002\tb\nnot-a-number\tc\n"));
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			check("a COPY with a bad row fails with 22P02", state, "22P02");
			check("the failed COPY left no rows", one(c, "SELECT count(*) FROM " + table + " WHERE id IN (70001, 70002)"), 0);
			check("the connection works after a failed COPY", one(c, "SELECT 'after copy'"), "after copy");
			/* a COPY the client cancels itself (CopyFail) */
			org.postgresql.copy.CopyIn ci = cm.copyIn("COPY " + table + " (id, v) FROM STDIN");
			byte[] row = "70003\tc\n".getBytes("UTF-8");
			ci.writeToCopy(row, 0, row.length);
			state = "none";
			try {
				ci.cancelCopy();
			} catch (SQLException e) {
				state = e.getSQLState();
			}
			check("the connection works after CopyFail", one(c, "SELECT count(*) FROM " + table + " WHERE id = 70003"), 0);
			try (Statement st = c.createStatement()) {
				st.executeUpdate("DELETE FROM " + table + " WHERE id >= 40000 AND id < 60000");
			}
		}
	}

	/* setFetchSize in a transaction: pgjdbc uses a named portal and Execute with a row limit */
	static void fetchSize() throws Exception
	{
		try (Connection c = connect()) {
			c.setAutoCommit(false);
			long sum = 0;
			int rows = 0;
			try (PreparedStatement p = c.prepareStatement("SELECT g, repeat('x', 100) FROM generate_series(1, ?) g")) {
				p.setFetchSize(100);
				p.setInt(1, 10000);
				try (ResultSet rs = p.executeQuery()) {
					while (rs.next()) {
						sum += rs.getInt(1);
						rows++;
						/* other statements while the portal is open */
						if (rows % 2500 == 0)
							one(c, "SELECT " + rows);
					}
				}
			}
			c.commit();
			c.setAutoCommit(true);
			check("fetchSize cursor returns every row", rows + ":" + sum, "10000:" + (10000L * 10001 / 2));
		}
	}

	static void largeTraffic() throws Exception
	{
		try (Connection c = connect()) {
			/* 20000 inserts in one batch: pgjdbc streams them without reading replies */
			int n = 20000;
			diag("large: batch of 20000 inserts");
			try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)")) {
				for (int i = 0; i < n; i++) {
					p.setInt(1, 100000 + i);
					p.setString(2, "large batch " + i);
					p.addBatch();
				}
				int[] counts = p.executeBatch();
				check("a batch of 20000 inserts returns 20000 counts", counts.length, n);
			}
			check("the table holds the 20000 rows", one(c, "SELECT count(*) FROM " + table + " WHERE id >= 100000 AND id < 120000"), n);
			/* the same with RETURNING, so replies are big too */
			diag("large: batch of 5000 updates with RETURNING");
			try (PreparedStatement p = c.prepareStatement("UPDATE " + table + " SET v = v || repeat('y', 200) WHERE id = ? RETURNING v",
								      new String[] {"v"})) {
				for (int i = 0; i < 5000; i++) {
					p.setInt(1, 100000 + i);
					p.addBatch();
				}
				p.executeBatch();
				int got = 0;
				try (ResultSet rs = p.getGeneratedKeys()) {
					while (rs.next())
						if (rs.getString(1).endsWith("yyyy"))
							got++;
				}
				check("a batch of 5000 updates with RETURNING gives 5000 rows back", got, 5000);
			}
			/* 8 MB values both ways */
			diag("large: 8 MB bytea");
			byte[] big = new byte[8 << 20];
			new Random(7).nextBytes(big);
			try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + " (id, v, b) VALUES (?, 'big', ?)")) {
				p.setInt(1, 130000);
				p.setBytes(2, big);
				p.executeUpdate();
			}
			try (PreparedStatement p = c.prepareStatement("SELECT b, md5(b) FROM " + table + " WHERE id = ?")) {
				p.setInt(1, 130000);
				try (ResultSet rs = p.executeQuery()) {
					rs.next();
					check("an 8 MB bytea comes back intact", Arrays.equals(rs.getBytes(1), big), true);
					java.security.MessageDigest md = java.security.MessageDigest.getInstance("MD5");
					StringBuilder hex = new StringBuilder();
					for (byte x : md.digest(big))
						hex.append(String.format("%02x", x));
					check("the server got the 8 MB bytea intact", rs.getString(2), hex.toString());
				}
			}
			String bigText = "z".repeat(5 << 20);
			diag("large: 5 MB text");
			try (PreparedStatement p = c.prepareStatement("SELECT length(?::text), ?::text")) {
				p.setString(1, bigText);
				p.setString(2, bigText);
				try (ResultSet rs = p.executeQuery()) {
					rs.next();
					check("a 5 MB text parameter and result", rs.getInt(1) + ":" + rs.getString(2).equals(bigText), (5 << 20) + ":true");
				}
			}
			try (Statement st = c.createStatement()) {
				st.executeUpdate("DELETE FROM " + table + " WHERE id >= 100000");
			}
		}
	}

	/* options=-c ... and ApplicationName in the startup packet */
	static void startupOptions() throws Exception
	{
		Properties pr = new Properties();
		pr.setProperty("options", "-c statement_timeout=7s -c search_path=pg_catalog,public");
		pr.setProperty("ApplicationName", "jdbc startup app");
		try (Connection c = DriverManager.getConnection(url, pr); Connection d = connect()) {
			for (int i = 0; i < 20; i++) {
				String a = one(c, "SELECT current_setting('statement_timeout') || '|' || current_setting('search_path') || '|' || current_setting('application_name')");
				String b = one(d, "SELECT current_setting('statement_timeout') || '|' || current_setting('search_path')");
				if (i == 0 || !a.equals("7s|pg_catalog,public|jdbc startup app") || !b.equals("0|\"$user\", public")) {
					check("startup options apply to their client (round " + i + ")", a, "7s|pg_catalog,public|jdbc startup app");
					check("startup options do not leak to another client (round " + i + ")", b, "0|\"$user\", public");
					if (i > 0)
						break;
				}
			}
		}
	}

	/*
	 * A SET that is a named prepared statement and executed again later: the second
	 * execution is only Bind/Execute, but changes the session all the same.
	 */
	static void preparedSet() throws Exception
	{
		try (Connection a = connect(); Connection b = connect()) {
			try (PreparedStatement s7 = a.prepareStatement("SET statement_timeout = '7s'");
			     PreparedStatement s8 = a.prepareStatement("SET statement_timeout = '8s'")) {
				for (int i = 0; i < 3; i++) {
					s7.execute();
					s8.execute();
				}
				s7.execute();
			}
			int wrong = 0;
			String first = null;
			for (int i = 0; i < 20; i++) {
				String ga = one(a, "SHOW statement_timeout"), gb = one(b, "SHOW statement_timeout");
				if (!ga.equals("7s") || !gb.equals("0")) {
					wrong++;
					if (first == null)
						first = "round " + i + ": client a sees " + ga + " (wants 7s), client b sees " + gb + " (wants 0)";
				}
			}
			check("a SET re-executed from a prepared statement holds for its client only",
			      wrong + (first == null ? "" : " (" + first + ")"), 0);
		}
	}

	/*
	 * DEALLOCATE ALL and DISCARD ALL sent by the application. pgjdbc sends them with the
	 * extended protocol like any statement, sees their command tags and prepares its
	 * statements again.
	 */
	static void deallocateAll() throws Exception
	{
		for (String cmd : new String[] {"DEALLOCATE ALL", "DISCARD ALL"}) {
			try (Connection c = connect()) {
				String res = "";
				try (PreparedStatement p = c.prepareStatement("SELECT ?::int + 7")) {
					for (int i = 0; i < 6; i++) {
						p.setInt(1, i);
						try (ResultSet rs = p.executeQuery()) {
							rs.next();
							res += rs.getInt(1) + ",";
						}
					}
					try (Statement st = c.createStatement()) {
						st.execute(cmd);
					}
					for (int i = 0; i < 6; i++) {
						p.setInt(1, i);
						try (ResultSet rs = p.executeQuery()) {
							rs.next();
							res += rs.getInt(1) + ",";
						}
					}
				} catch (SQLException e) {
					res += describe(e);
				}
				check("prepared statement works before and after " + cmd, res, "7,8,9,10,11,12,7,8,9,10,11,12,");
				/* the statement name in shardpool's cache must still be usable by others */
				try (Connection d = connect(); PreparedStatement p = d.prepareStatement("SELECT ?::int + 7")) {
					res = "";
					for (int i = 0; i < 6; i++) {
						p.setInt(1, i);
						try (ResultSet rs = p.executeQuery()) {
							rs.next();
							res += rs.getInt(1) + ",";
						}
					}
				} catch (SQLException e) {
					res += describe(e);
				}
				check("the same statement works for a new client after " + cmd, res, "7,8,9,10,11,12,");
			}
		}
	}

	/*
	 * ALTER TABLE changes the result type of a prepared SELECT *: PostgreSQL answers
	 * 0A000 "cached plan must not change result type" and pgjdbc, in autocommit,
	 * prepares the statement again and retries, so the application sees no error.
	 */
	static void planInvalidation() throws Exception
	{
		String t = table + "_pi";
		try (Connection c = connect(); Statement st = c.createStatement()) {
			st.execute("DROP TABLE IF EXISTS " + t);
			st.execute("CREATE TABLE " + t + " (id int, a text)");
			st.execute("INSERT INTO " + t + " VALUES (1, 'one')");
			String res = "";
			try (PreparedStatement p = c.prepareStatement("SELECT * FROM " + t + " WHERE id = ?")) {
				for (int i = 0; i < 6; i++) {
					p.setInt(1, 1);
					try (ResultSet rs = p.executeQuery()) {
						rs.next();
						res = rs.getMetaData().getColumnCount() + " columns";
					}
				}
				st.execute("ALTER TABLE " + t + " ADD COLUMN b int DEFAULT 5");
				for (int i = 0; i < 3; i++) {
					p.setInt(1, 1);
					try (ResultSet rs = p.executeQuery()) {
						rs.next();
						res = rs.getMetaData().getColumnCount() + " columns, b=" + rs.getInt("b");
					}
				}
			} catch (SQLException e) {
				res = describe(e);
			}
			check("a prepared SELECT * keeps working after ALTER TABLE ADD COLUMN", res, "3 columns, b=5");
			st.execute("DROP TABLE " + t);
		}
	}

	/*
	 * With pool_size 2, two clients in open transactions hold both server
	 * connections; a third sends a statement with a large parameter and has to wait
	 * for one. Once the holders commit, it must get its answer. Done for a
	 * parameter below and above 256 kB, the amount of buffered input at which
	 * shardpool stops reading a waiting client.
	 */
	static void bigMessageWhileWaiting() throws Exception
	{
		for (int size : new int[] {100 << 10, 1 << 20}) {
			Connection h1 = connect(), h2 = connect(), c = connect();
			try {
				h1.setAutoCommit(false);
				h2.setAutoCommit(false);
				one(h1, "SELECT 1");
				one(h2, "SELECT 2");
				byte[] big = new byte[size];
				new Random(size).nextBytes(big);
				java.security.MessageDigest md = java.security.MessageDigest.getInstance("MD5");
				StringBuilder hex = new StringBuilder();
				for (byte x : md.digest(big))
					hex.append(String.format("%02x", x));
				final String[] got = {"no answer within 12 s"};
				Thread t = new Thread(() -> {
					try (PreparedStatement p = c.prepareStatement("SELECT md5(?::bytea)")) {
						p.setBytes(1, big);
						try (ResultSet rs = p.executeQuery()) {
							rs.next();
							got[0] = rs.getString(1);
						}
					} catch (SQLException e) {
						got[0] = describe(e);
					}
				});
				t.start();
				Thread.sleep(1000);
				h1.commit();
				h2.commit();
				t.join(12000);
				check("a " + (size >> 10) + " kB statement sent while the pool is busy is answered once a server is free",
				      got[0], hex.toString());
				if (t.isAlive()) {
					c.abort(Runnable::run);
					t.join(5000);
				}
			} finally {
				h1.close();
				h2.close();
				c.close();
			}
		}
	}
}
