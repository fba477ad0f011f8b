/*
 * auth.c - authentication on both sides of the proxy.
 *
 * Clients: trust, md5 and scram-sha-256 against auth_file (pgbouncer's
 * userlist.txt). An unknown user goes through the same exchange as a known
 * one, against a mock secret, and fails with the same 28P01 message, so the
 * answer does not reveal which users exist. A successful SCRAM login leaves
 * the client's ClientKey with its pool, so shardpool can log in to servers
 * holding the same SCRAM secret without a plain password (as pgbouncer does).
 *
 * Servers: trust, cleartext, md5 and scram-sha-256, with the password from
 * the shard's conninfo, else the user's secret from auth_file, else the keys
 * a client's SCRAM login left behind.
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "admin.h"
#include "auth_md5.h"
#include "auth_scram.h"
#include "client.h"
#include "daemon.h"
#include "log.h"
#include "msg.h"
#include "pool.h"
#include "server.h"

enum { METHOD_TRUST = 0, METHOD_MD5, METHOD_SCRAM };

static const sp_user_t *find_user(const char *name)
{
	return sp_g.users ? sp_userlist_find(sp_g.users, name) : NULL;
}

/*
 * A plain secret must be turned into a SCRAM secret for every SCRAM login,
 * and that costs 4096 PBKDF2 iterations (about 1 ms). The result depends only
 * on the password and a salt we choose, so it is kept per user: a storm of
 * logins pays it once. Keyed by user and password, so a changed auth_file is
 * picked up.
 */
#define SCRAM_CACHE 64
static struct {
	char *user, *password;
	sp_scram_secret_t secret;
} scram_cache[SCRAM_CACHE];
static unsigned scram_cache_next;

static bool plain_scram_secret(const char *user, const char *password, sp_scram_secret_t *out)
{
	for (int i = 0; i < SCRAM_CACHE; i++)
		if (scram_cache[i].user && strcmp(scram_cache[i].user, user) == 0 &&
		    strcmp(scram_cache[i].password, password) == 0) {
			*out = scram_cache[i].secret;
			return true;
		}
	if (!sp_scram_secret_from_password(password, out))
		return false;
	{
		unsigned k = scram_cache_next++ % SCRAM_CACHE;
		char *u = strdup(user), *p = strdup(password);
		if (!u || !p) {
			free(u);
			free(p);
			return true;
		}
		free(scram_cache[k].user);
		free(scram_cache[k].password);
		scram_cache[k].user = u;
		scram_cache[k].password = p;
		scram_cache[k].secret = *out;
	}
	return true;
}

void sp_auth_cache_free(void)
{
	for (int i = 0; i < SCRAM_CACHE; i++) {
		free(scram_cache[i].user);
		free(scram_cache[i].password);
		scram_cache[i].user = scram_cache[i].password = NULL;
	}
}

static void auth_fail(sp_client_t *c)
{
	sp_client_fatal(c, SP_SQLSTATE_INVALID_PASSWORD, "password authentication failed for user \"%s\"", c->user);
}

static void login_ok(sp_client_t *c)
{
	sp_msg_write_auth(&c->sock.out, SP_AUTHREQ_OK, NULL, 0);
	if (c->is_admin) {
		if (!sp_config_user_in_list(sp_g.cfg->admin_users, c->user) &&
		    !sp_config_user_in_list(sp_g.cfg->stats_users, c->user)) {
			sp_client_fatal(c, SP_SQLSTATE_INVALID_AUTH,
					"user \"%s\" is not allowed on the admin console; list it in admin_users or stats_users",
					c->user);
			return;
		}
		sp_admin_login(c);
		return;
	}
	if (!c->db) {
		sp_client_fatal(c, SP_SQLSTATE_UNDEFINED_DATABASE,
				"database \"%s\" does not exist in shardpool; add a [database %s] section to the config",
				c->dbname, c->dbname);
		return;
	}
	if (sp_pool_db_disabled(c->dbname)) {
		sp_client_fatal(c, SP_SQLSTATE_OBJECT_NOT_IN_STATE,
				"database \"%s\" is not currently accepting connections (DISABLE on the admin console; ENABLE %s ends it)",
				c->dbname, c->dbname);
		return;
	}
	c->pool_mode = sp_config_db_pool_mode(sp_g.cfg, c->db);
	c->pool = sp_pool_get(c->dbname, c->user, c->db->default_shard, SP_ROLE_PRIMARY, 0);
	if (!c->pool) {
		sp_client_fatal(c, SP_SQLSTATE_INTERNAL, "no pool for database \"%s\"", c->dbname);
		return;
	}
	if (c->scram_active && c->scram.have_client_key) {
		/* Every pool of this user may log in with these keys. */
		for (sp_pool_t *p = sp_pool_first(); p; p = p->next)
			if (strcmp(p->user, c->user) == 0 && strcmp(p->dbname, c->dbname) == 0) {
				memcpy(p->scram_client_key, c->scram.client_key, SP_SCRAM_KEY_LEN);
				memcpy(p->scram_server_key, c->scram.secret.server_key, SP_SCRAM_KEY_LEN);
				p->have_scram_keys = true;
			}
	}
	c->home_pool = c->pool;
	c->txn_shard = -1;
	sp_router_session_init(&c->rsess);
	/* PGCLIENTENCODING, options=-c client_encoding=...: text keys in another
	 * encoding than UTF8 are refused, not hashed as bytes the server converts */
	sp_router_session_set_client_encoding(&c->rsess, sp_params_get(&c->startup, "client_encoding"));
	c->routed = c->db->n_shards > 1;
	/* with replicas, also when reads stay on the primary: a promoted replica takes
	 * the writes, so the server is chosen per transaction */
	for (int i = 0; i < c->db->n_shards && !c->routed; i++)
		if (c->db->shards[i].n_replicas > 0)
			c->routed = true;
	if (c->routed) {
		c->written_lsn = calloc((size_t)c->db->n_shards, sizeof(uint64_t));
		if (!c->written_lsn) {
			sp_client_fatal(c, SP_SQLSTATE_OUT_OF_MEMORY, "out of memory");
			return;
		}
	}
	c->state = SP_CLIENT_WELCOME;
	c->wait_since = ev_now(sp_loop);
	sp_pool_acquire(c->pool, c);
}

void sp_auth_client_start(sp_client_t *c)
{
	const sp_user_t *u = find_user(c->user);
	sp_scram_secret_t secret;

	switch (sp_g.cfg->auth_type) {
	case SP_AUTH_TRUST:
		if (sp_g.users && !u) {
			sp_client_fatal(c, SP_SQLSTATE_INVALID_AUTH, "user \"%s\" is not listed in auth_file", c->user);
			return;
		}
		c->auth_method = METHOD_TRUST;
		login_ok(c);
		return;
	case SP_AUTH_MD5:
		if (!u || u->kind != SP_SECRET_SCRAM) {
			c->auth_method = METHOD_MD5;
			c->auth_failed = !u;
			RAND_bytes(c->md5_salt, 4);
			sp_msg_write_auth(&c->sock.out, SP_AUTHREQ_MD5, c->md5_salt, 4);
			return;
		}
		/* a SCRAM secret can only be checked with SCRAM */
		/* fall through */
	case SP_AUTH_SCRAM:
	default:
		c->auth_method = METHOD_SCRAM;
		if (u && u->kind == SP_SECRET_SCRAM && sp_scram_parse_secret(u->secret, &secret)) {
			c->auth_failed = false;
		} else if (u && u->kind == SP_SECRET_PLAIN && *u->secret &&
			   plain_scram_secret(u->name, u->secret, &secret)) {
			c->auth_failed = false;
		} else {
			sp_scram_secret_mock(c->user, &secret);
			c->auth_failed = true;
		}
		sp_scram_server_init(&c->scram, &secret);
		c->scram_active = true;
		{
			static const char mechs[] = "SCRAM-SHA-256\0";
			sp_msg_write_auth(&c->sock.out, SP_AUTHREQ_SASL, mechs, sizeof(mechs));
		}
		return;
	}
}

void sp_auth_client_message(sp_client_t *c, const uint8_t *body, size_t len)
{
	char err[256];
	char *out = NULL;

	if (c->auth_method == METHOD_MD5) {
		const sp_user_t *u = find_user(c->user);
		if (len == 0 || body[len - 1] != 0) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "invalid password packet");
			return;
		}
		if (!sp_md5_verify(u ? u->secret : "md5-no-such-user-00000000000000000", c->user, c->md5_salt,
				   (const char *)body) ||
		    c->auth_failed) {
			auth_fail(c);
			return;
		}
		login_ok(c);
		return;
	}
	if (c->auth_method != METHOD_SCRAM) {
		sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "unexpected password message");
		return;
	}
	if (c->scram.state == 0) {
		sp_msg_reader_t r;
		const char *mech;
		int32_t n;
		const uint8_t *data;
		sp_msg_reader_init(&r, body, len);
		if (!pq_getmsgstring(&r, &mech, NULL) || !pq_getmsgint32(&r, &n) || n < 0 ||
		    !pq_getmsgbytes(&r, (size_t)n, &data)) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "malformed SASLInitialResponse");
			return;
		}
		if (strcmp(mech, SP_SCRAM_MECH) != 0) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION,
					"client selected an invalid SASL authentication mechanism \"%s\"", mech);
			return;
		}
		if (!sp_scram_server_first(&c->scram, (const char *)data, (size_t)n, &out, err, sizeof(err))) {
			sp_client_fatal(c, SP_SQLSTATE_PROTOCOL_VIOLATION, "SCRAM: %s", err);
			return;
		}
		sp_msg_write_auth(&c->sock.out, SP_AUTHREQ_SASL_CONTINUE, out, strlen(out));
		free(out);
		return;
	}
	if (!sp_scram_server_final(&c->scram, (const char *)body, len, &out, err, sizeof(err)) || c->auth_failed) {
		free(out);
		auth_fail(c);
		return;
	}
	sp_msg_write_auth(&c->sock.out, SP_AUTHREQ_SASL_FINAL, out, strlen(out));
	free(out);
	login_ok(c);
}

/* ---------------- server side ---------------- */

static const char *server_user(const sp_server_t *s)
{
	return s->pool->node->user ? s->pool->node->user : s->pool->user;
}

static const char *server_secret(const sp_server_t *s, sp_secret_kind_t *kind)
{
	const sp_user_t *u;
	if (s->pool->node->password) {
		*kind = SP_SECRET_PLAIN;
		return s->pool->node->password;
	}
	u = find_user(server_user(s));
	if (!u)
		return NULL;
	*kind = u->kind;
	return u->secret;
}

bool sp_auth_server_request(sp_server_t *s, const uint8_t *body, size_t len, char *err, size_t errlen)
{
	int32_t code;
	sp_secret_kind_t kind = SP_SECRET_PLAIN;
	const char *secret = server_secret(s, &kind);
	sp_buf_t *out = &s->sock.out;

	if (len < 4) {
		snprintf(err, errlen, "malformed authentication request from server");
		return false;
	}
	code = (int32_t)sp_get_be32(body);
	switch (code) {
	case SP_AUTHREQ_OK:
		return true;
	case SP_AUTHREQ_CLEARTEXT:
		if (!secret || kind != SP_SECRET_PLAIN) {
			snprintf(err, errlen, "server asks for a cleartext password for user \"%s\" but no plain password is configured (set password= in the shard's conninfo)", server_user(s));
			return false;
		}
		sp_msg_write_password(out, secret);
		return true;
	case SP_AUTHREQ_MD5: {
		char stored[SP_MD5_PASSWD_LEN + 1], resp[SP_MD5_PASSWD_LEN + 1];
		if (len < 8) {
			snprintf(err, errlen, "malformed md5 request from server");
			return false;
		}
		if (secret && kind == SP_SECRET_PLAIN)
			sp_md5_stored(secret, server_user(s), stored);
		else if (secret && kind == SP_SECRET_MD5)
			snprintf(stored, sizeof(stored), "%s", secret);
		else {
			snprintf(err, errlen, "server asks for md5 authentication for user \"%s\" but no plain or md5 password is known (auth_file or password= in the conninfo)", server_user(s));
			return false;
		}
		sp_md5_salted(stored, body + 4, resp);
		sp_msg_write_password(out, resp);
		return true;
	}
	case SP_AUTHREQ_SASL: {
		bool found = false;
		char *first;
		size_t pos = 4;
		while (pos < len && body[pos]) {
			const char *m = (const char *)body + pos;
			const char *z = memchr(m, 0, len - pos);
			size_t ml = z ? (size_t)(z - m) : len - pos;
			if (strcmp(m, SP_SCRAM_MECH) == 0)
				found = true;
			pos += ml + 1;
		}
		if (!found) {
			snprintf(err, errlen, "server offers no SASL mechanism shardpool supports (need SCRAM-SHA-256)");
			return false;
		}
		if (secret && kind == SP_SECRET_PLAIN && *secret) {
			sp_scram_client_init_password(&s->scram, secret);
		} else if (s->pool->have_scram_keys) {
			sp_scram_client_init_keys(&s->scram, s->pool->scram_client_key, s->pool->scram_server_key);
		} else {
			snprintf(err, errlen, "server asks for SCRAM authentication for user \"%s\" but no plain password is known and no client has logged in with SCRAM yet (set password= in the shard's conninfo or a plain secret in auth_file)", server_user(s));
			return false;
		}
		s->scram_active = true;
		first = sp_scram_client_first(&s->scram);
		if (!first) {
			snprintf(err, errlen, "out of memory");
			return false;
		}
		sp_msg_write_sasl_initial(out, SP_SCRAM_MECH, first, strlen(first));
		free(first);
		return true;
	}
	case SP_AUTHREQ_SASL_CONTINUE: {
		char *final = NULL;
		char e[200];
		if (!s->scram_active || !sp_scram_client_final(&s->scram, (const char *)body + 4, len - 4, &final, e, sizeof(e))) {
			snprintf(err, errlen, "SCRAM login to server failed: %s", s->scram_active ? e : "unexpected message");
			return false;
		}
		sp_msg_write_sasl_response(out, final, strlen(final));
		free(final);
		return true;
	}
	case SP_AUTHREQ_SASL_FINAL: {
		char e[200];
		if (!s->scram_active || !sp_scram_client_verify(&s->scram, (const char *)body + 4, len - 4, e, sizeof(e))) {
			snprintf(err, errlen, "SCRAM: server signature invalid: %s", s->scram_active ? e : "unexpected message");
			return false;
		}
		return true;
	}
	default:
		snprintf(err, errlen, "server requested an unsupported authentication method (code %d)", code);
		return false;
	}
}
