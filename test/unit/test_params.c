/*
 * test_params.c - session parameter sets: set, replace, remove, the signatures that
 * make "already in sync" one comparison, and the SQL that brings a server session
 * to a client's settings.
 */
#include <string.h>

#include "params.h"
#include "tap.h"

/* The SQL sp_params_write_sync() writes for want over have ("" when none). */
static const char *sync_sql(const sp_params_t *want, const sp_params_t *have, int *diffs)
{
	static sp_buf_t b;
	sp_buf_reset(&b);
	*diffs = sp_params_write_sync(&b, want, have);
	sp_buf_append(&b, "", 1);
	return (const char *)sp_buf_head(&b);
}

static void test_sets(void)
{
	sp_params_t a = {0}, b = {0};

	sp_params_set(&a, "DateStyle", "ISO, MDY");
	sp_params_set(&a, "application_name", "x");
	sp_params_set(&b, "application_name", "x");
	sp_params_set(&b, "datestyle", "ISO, MDY");
	is_str(sp_params_get(&a, "datestyle"), "ISO, MDY", "names are case-insensitive");
	ok(a.sig == b.sig && a.n == b.n, "the same settings in another order: the same signature");
	sp_params_set(&a, "application_name", "y");
	ok(a.sig != b.sig, "a changed value changes the signature");
	sp_params_set(&a, "application_name", "x");
	ok(a.sig == b.sig, "... and changing it back restores it");
	ok(sp_params_remove(&a, "DATESTYLE") && !sp_params_get(&a, "DateStyle") && a.n == 1,
	   "remove by any case");
	ok(!sp_params_remove(&a, "DateStyle"), "removing what is not there: false");
	sp_params_clear(&a);
	sp_params_clear(&b);
	ok(a.n == 0 && a.sig == 0 && a.rw_sig == 0 && a.rw_n == 0, "clear empties the set");
}

static void test_write_sync(void)
{
	sp_params_t client = {0}, primary = {0}, replica = {0};
	const char *sql;
	int diffs;

	/* the client logged in through the primary; a replica reports in_hot_standby */
	sp_params_set(&client, "application_name", "app");
	sp_params_set(&client, "TimeZone", "UTC");
	sp_params_set(&client, "in_hot_standby", "off");
	sp_params_set(&client, "server_version", "15.4");
	sp_params_copy(&primary, &client);
	sp_params_copy(&replica, &client);
	sp_params_set(&replica, "in_hot_standby", "on");
	sp_params_set(&replica, "server_version", "15.5");

	sql = sync_sql(&client, &primary, &diffs);
	ok(diffs == 0 && !*sql, "the same settings: nothing to write");
	sql = sync_sql(&client, &replica, &diffs);
	ok(diffs == 0 && !*sql, "a replica differing only in read-only settings: nothing to write");
	ok(client.sig != replica.sig && client.rw_sig == replica.rw_sig,
	   "... its full signature differs, the one of settable names does not");

	sp_params_set(&client, "TimeZone", "Europe/Paris");
	sql = sync_sql(&client, &replica, &diffs);
	ok(diffs == 1 && strstr(sql, "set_config('TimeZone', 'Europe/Paris', false)") && !strstr(sql, "in_hot_standby"),
	   "a changed TimeZone is set, read-only names never: %s", sql);

	sp_params_set(&replica, "TimeZone", "Europe/Paris");
	sp_params_set(&replica, "search_path", "other");
	sql = sync_sql(&client, &replica, &diffs);
	ok(diffs == 1 && strstr(sql, "RESET \"search_path\""), "a setting the client never made is reset: %s", sql);

	sp_params_remove(&replica, "search_path");
	sp_params_remove(&replica, "in_hot_standby");
	sql = sync_sql(&client, &replica, &diffs);
	ok(diffs == 0, "removing read-only names keeps the sets in sync");
	sp_params_set(&client, "it's", "a 'quoted' value");
	sql = sync_sql(&client, &replica, &diffs);
	ok(diffs == 1 && strstr(sql, "set_config('it''s', 'a ''quoted'' value', false)"),
	   "names and values are quoted as literals: %s", sql);

	sp_params_clear(&client);
	sp_params_clear(&primary);
	sp_params_clear(&replica);
}

static void test_options(void)
{
	sp_params_t p = {0};

	ok(sp_params_parse_options(&p, "-c work_mem=64MB --search-path=a\\ b -csynchronous_commit=off"),
	   "options: -c, --name=value, -cname=value");
	is_str(sp_params_get(&p, "work_mem"), "64MB", "... -c work_mem");
	is_str(sp_params_get(&p, "search_path"), "a b", "... --search-path with an escaped space");
	is_str(sp_params_get(&p, "synchronous_commit"), "off", "... -csynchronous_commit");
	ok(!sp_params_parse_options(&p, "-c"), "options: -c without a value is refused");
	ok(!sp_params_parse_options(&p, "-x 1"), "options: an unknown switch is refused");
	sp_params_clear(&p);
}

int main(void)
{
	test_sets();
	test_write_sync();
	test_options();
	return done_testing();
}
