/*
 * userlist.h - auth_file in pgbouncer's userlist.txt format.
 *
 * Each non-comment line is `"user" "secret"`; a doubled quote ("") inside a
 * quoted string stands for one quote. The secret is a plain password,
 * "md5" + 32 hex digits, or "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
 */
#ifndef SP_USERLIST_H
#define SP_USERLIST_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { SP_SECRET_PLAIN = 0, SP_SECRET_MD5, SP_SECRET_SCRAM } sp_secret_kind_t;

typedef struct sp_user {
	char *name;
	char *secret;
	sp_secret_kind_t kind;
} sp_user_t;

typedef struct sp_userlist {
	sp_user_t *users; /* sorted by name for binary search */
	int n_users;
} sp_userlist_t;

/* Parse path. On error returns NULL and writes "FILE:LINE: what was expected" to err. */
sp_userlist_t *sp_userlist_load(const char *path, char *err, size_t errlen);
/* Parse from a memory buffer (for tests); name is used in messages. */
sp_userlist_t *sp_userlist_parse(const char *name, const char *text, char *err, size_t errlen);
void sp_userlist_free(sp_userlist_t *ul);
/* NULL if the user is not listed. */
const sp_user_t *sp_userlist_find(const sp_userlist_t *ul, const char *user);

#endif
