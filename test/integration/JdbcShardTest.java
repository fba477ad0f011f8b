/*
 * JdbcShardTest.java - pgjdbc against a sharded database through shardpool, each answer
 * checked against the same query on an unsharded copy of the rows; driven by
 * test/integration/60_jdbc.t.
 *
 *   java -cp DIR:/usr/share/java/postgresql.jar JdbcShardTest SHARDED_URL PLAIN_URL TABLE FLAT
 *
 * TABLE is sharded by id (bigint) in SHARDED_URL's database; FLAT holds the same rows
 * in PLAIN_URL's. Both exist and are filled before this runs. pgjdbc sends every
 * statement with the extended protocol, so what is checked here is the per-shard
 * rewriting at Bind (avg, OFFSET, LIMIT with GROUP BY, parameters in LIMIT/OFFSET),
 * setMaxRows (Execute with a row limit over a merged result), the first statement of
 * an autocommit-off transaction sent with its BEGIN (also with a setSavepoint() first), executeBatch over several shards
 * (split by shard, all or nothing), and the refusal of a fetch-size cursor over several
 * shards. Output as JdbcTest.java, whose check and group it uses: check lines, then
 * `end`.
 */
import java.sql.*;
import java.util.*;

public class JdbcShardTest {
	static String shardedUrl, plainUrl, table, flat;

	/* check lines, failure descriptions and groups as JdbcTest prints them (compiled with it) */
	static void check(String desc, Object got, Object expected)
	{
		JdbcTest.check(desc, got, expected);
	}

	static void group(String name, JdbcTest.Step s)
	{
		JdbcTest.group(name, s);
	}

	/* every row of a result, columns joined by '|', rows by ',' */
	static String rows(ResultSet rs) throws SQLException
	{
		StringBuilder b = new StringBuilder();
		int n = rs.getMetaData().getColumnCount();
		while (rs.next()) {
			if (b.length() > 0)
				b.append(',');
			for (int i = 1; i <= n; i++) {
				if (i > 1)
					b.append('|');
				b.append(rs.getString(i));
			}
		}
		return b.toString();
	}

	/* the query (with {T} for the table) and its parameters on a connection */
	static String run(Connection c, String sql, String t, int maxRows, Object... params) throws SQLException
	{
		try (PreparedStatement p = c.prepareStatement(sql.replace("{T}", t))) {
			for (int i = 0; i < params.length; i++)
				p.setObject(i + 1, params[i]);
			if (maxRows > 0)
				p.setMaxRows(maxRows);
			try (ResultSet rs = p.executeQuery()) {
				return rows(rs);
			}
		}
	}

	/* the same answer from the sharded table as from the unsharded one, five times (the
	 * later executions use the server-side statement pgjdbc names after prepareThreshold) */
	static void same(Connection s, Connection p, String desc, String sql, int maxRows, Object... params)
	    throws SQLException
	{
		String want = run(p, sql, flat, maxRows, params);
		String got = null;
		int agree = 0;
		for (int i = 0; i < 5; i++) {
			got = run(s, sql, table, maxRows, params);
			if (got.equals(want))
				agree++;
		}
		check(desc + " (5 executions agree with the unsharded table)", agree == 5 ? "same" : got, agree == 5 ? "same" : want);
		if (want.isEmpty())
			check(desc + ": the unsharded answer is not empty", "empty", "rows");
	}

	public static void main(String[] args) throws Exception
	{
		shardedUrl = args[0];
		plainUrl = args[1];
		table = args[2];
		flat = args[3];
		DriverManager.setLoginTimeout(20);
		try (Connection s = DriverManager.getConnection(shardedUrl);
		     Connection p = DriverManager.getConnection(plainUrl)) {
			group("rewritten at Bind", () -> {
				same(s, p, "count, sum, avg over every shard", "SELECT count(*), sum(amount), avg(amount), avg(grp) FROM {T}", 0);
				same(s, p, "avg with GROUP BY and ORDER BY", "SELECT grp, avg(amount), count(*) FROM {T} GROUP BY grp ORDER BY grp", 0);
				same(s, p, "avg with a parameter in WHERE", "SELECT avg(amount) FROM {T} WHERE grp < ?", 0, 4);
				same(s, p, "LIMIT ? OFFSET ?", "SELECT id, name FROM {T} ORDER BY id LIMIT ? OFFSET ?", 0, 10, 35);
				same(s, p, "WHERE, ORDER BY DESC, LIMIT ? OFFSET ?", "SELECT id FROM {T} WHERE grp = ? ORDER BY id DESC LIMIT ? OFFSET ?", 0, 3, 5, 7);
				same(s, p, "GROUP BY with LIMIT ?", "SELECT grp, count(*) FROM {T} GROUP BY grp ORDER BY 2 DESC, 1 LIMIT ?", 0, 3);
				same(s, p, "OFFSET ? alone", "SELECT id FROM {T} ORDER BY id OFFSET ?", 0, 480);
			});
			group("setMaxRows", () -> {
				same(s, p, "setMaxRows(7) over a sorted fan-out", "SELECT id, name FROM {T} ORDER BY id", 7);
				same(s, p, "setMaxRows(4) with OFFSET", "SELECT id FROM {T} ORDER BY id DESC OFFSET 20", 4);
				same(s, p, "setMaxRows(2) over GROUP BY", "SELECT grp, sum(amount) FROM {T} GROUP BY grp ORDER BY grp", 2);
				same(s, p, "setMaxRows(1000) larger than the result", "SELECT id FROM {T} WHERE grp = 1 ORDER BY id", 1000);
			});
			group("executeBatch over shards", () -> {
				/* pgjdbc sends the batch's Bind/Execute pairs before one Sync: split by shard */
				int n = 0;
				try (PreparedStatement ins = s.prepareStatement("INSERT INTO " + table + " (id, grp, amount, name) VALUES (?, ?, ?, ?)")) {
					for (long id = 10001; id <= 10300; id++) {
						ins.setLong(1, id);
						ins.setInt(2, 9);
						ins.setBigDecimal(3, new java.math.BigDecimal("1.50"));
						ins.setString(4, "b" + id);
						ins.addBatch();
					}
					/* with reWriteBatchedInserts pgjdbc reports SUCCESS_NO_INFO per row */
					for (int c : ins.executeBatch())
						n += c == Statement.SUCCESS_NO_INFO ? 1 : c;
				}
				check("executeBatch of 300 inserts over the shards: update counts", n, 300);
				int found = 0;
				try (PreparedStatement q = s.prepareStatement("SELECT name FROM " + table + " WHERE id = ?")) {
					for (long id = 10001; id <= 10300; id += 13) {
						q.setLong(1, id);
						try (ResultSet rs = q.executeQuery()) {
							if (rs.next() && rs.getString(1).equals("b" + id))
								found++;
						}
					}
				}
				check("each batch row is found by its key (its shard)", found, 24);
				check("the batch's rows, counted over every shard", run(s, "SELECT count(*) FROM {T} WHERE grp = 9", table, 0), "300");
				String state = "no error";
				try (PreparedStatement ins = s.prepareStatement("INSERT INTO " + table + " (id, grp, amount, name) VALUES (?, 10, 0, 'x')")) {
					for (long id = 10401; id <= 10420; id++) {
						ins.setLong(1, id);
						ins.addBatch();
					}
					ins.setLong(1, 10005); /* already there */
					ins.addBatch();
					ins.executeBatch();
				} catch (SQLException e) {
					state = e.getSQLState();
				}
				check("a batch with a duplicate key fails with 23505", state, "23505");
				check("and none of its rows stays on any shard", run(s, "SELECT count(*) FROM {T} WHERE grp = 10", table, 0), "0");
				try (Statement st = s.createStatement()) {
					st.executeUpdate("DELETE FROM " + table + " WHERE grp = 9 AND id IN (" +
							 java.util.stream.LongStream.rangeClosed(10001, 10300).mapToObj(Long::toString)
							     .collect(java.util.stream.Collectors.joining(",")) + ")");
				}
				check("the batch's rows deleted again", run(s, "SELECT count(*) FROM {T} WHERE grp = 9", table, 0), "0");
			});
			group("autocommit off", () -> {
				s.setAutoCommit(false);
				p.setAutoCommit(false);
				/* pgjdbc sends BEGIN and the first statement before one Sync */
				check("a transaction whose first statement reads every shard",
				      run(s, "SELECT count(*) FROM {T}", table, 0), run(p, "SELECT count(*) FROM {T}", flat, 0));
				try (PreparedStatement u = s.prepareStatement("UPDATE " + table + " SET name = ? WHERE id = ?")) {
					u.setString(1, "jdbc-txn");
					u.setLong(2, 17);
					check("then an UPDATE by key in the same transaction", u.executeUpdate(), 1);
				}
				s.commit();
				p.commit();
				check("the UPDATE committed", run(s, "SELECT name FROM {T} WHERE id = ?", table, 0, 17L), "jdbc-txn");
				check("a keyed read opens the next transaction", run(s, "SELECT id FROM {T} WHERE id = ?", table, 0, 18L), "18");
				s.rollback();
				/* a cursor (fetch size) over several shards cannot stay open: refused, never partial */
				String state = "no error";
				try (PreparedStatement q = s.prepareStatement("SELECT id FROM " + table + " ORDER BY id")) {
					q.setFetchSize(10);
					try (ResultSet rs = q.executeQuery()) {
						int n = 0;
						while (rs.next())
							n++;
						state = "read " + n + " rows";
					}
				} catch (SQLException e) {
					state = e.getSQLState();
				}
				check("setFetchSize over several shards in a transaction: 0A000", state, "0A000");
				s.rollback();
				try (PreparedStatement q = s.prepareStatement("SELECT id FROM " + table + " WHERE id = ?")) {
					q.setFetchSize(10);
					q.setLong(1, 19);
					try (ResultSet rs = q.executeQuery()) {
						check("setFetchSize on one shard (by key) in a transaction", rows(rs), "19");
					}
				}
				s.commit();
				/* setSavepoint() first: BEGIN and SAVEPOINT come before the first key,
				 * which may be on either shard */
				int updated = 0;
				String err = "none";
				for (long k = 20; k < 28; k++) {
					try (PreparedStatement u = s.prepareStatement("UPDATE " + table + " SET name = ? WHERE id = ?")) {
						Savepoint sp = s.setSavepoint();
						u.setString(1, "sp" + k);
						u.setLong(2, k);
						updated += u.executeUpdate();
						s.releaseSavepoint(sp);
						s.commit();
					} catch (SQLException e) {
						err = e.getSQLState() + " " + e.getMessage();
						s.rollback();
					}
				}
				check("setSavepoint, then an UPDATE by key on either shard, 8 times", updated + " " + err, "8 none");
				check("... committed", run(s, "SELECT name FROM {T} WHERE id = ?", table, 0, 27L), "sp27");
				s.commit();
				try (PreparedStatement u = p.prepareStatement("UPDATE " + flat + " SET name = 'sp' || id WHERE id >= 20 AND id < 28")) {
					u.executeUpdate(); /* the unsharded copy stays the same */
				}
				p.commit();
				s.setAutoCommit(true);
				p.setAutoCommit(true);
				check("the connection works after all that", run(s, "SELECT 1", table, 0), "1");
			});
		}
		System.out.println("end");
	}
}
