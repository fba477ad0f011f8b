/*
 * hashcheck.c - shard indexes computed by shardpool's shard_hash module, for
 * comparison with the partitions a real PostgreSQL puts the same keys in.
 *
 *   hashcheck TYPE[,TYPE...] MODULUS... < keys.tsv
 *   hashcheck --parse TYPE < literals.tsv
 *
 * TYPE is smallint, integer, bigint, text, varchar or uuid. Each input line
 * is in COPY text format (tab-separated, backslash escapes, \N for NULL): an
 * id, passed through untouched, then one column per key type. Each output
 * line is the id and the remainder for every MODULUS, tab-separated, so the
 * same file can be COPYed into PARTITION BY HASH tables and the two results
 * compared line by line.
 *
 * Each integer and uuid key is also re-encoded in network byte order and
 * parsed again through the binary-parameter path; a disagreement between the
 * two paths is an error (exit status 1). A key the parser rejects prints
 * "ERR message" instead of remainders.
 *
 * With --parse, each line is an id and one literal; the output is the id and
 * "OK" or the SQLSTATE the parser gives, to compare with what the server's
 * input function says about the same literal.
 */
#include "shard_hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 8
#define MAX_MODULI 16

static int parse_type(const char *name, sp_key_type_t *out)
{
	static const struct {
		const char *name;
		sp_key_type_t type;
	} names[] = {
	    {"smallint", SP_KEY_SMALLINT}, {"integer", SP_KEY_INTEGER}, {"bigint", SP_KEY_BIGINT},
	    {"text", SP_KEY_TEXT},	   {"varchar", SP_KEY_VARCHAR}, {"uuid", SP_KEY_UUID},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].type;
			return 0;
		}
	}
	return -1;
}

static int octal(char c)
{
	return c >= '0' && c <= '7' ? c - '0' : -1;
}

static int hexdig(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Undo COPY text escaping in place over [s, s+len); returns the new length.
 * Follows PostgreSQL's CopyReadAttributesText: \b \f \n \r \t \v, 1-3 octal
 * digits, \x with 1-2 hex digits, and any other escaped byte stands for itself.
 */
static size_t unescape(char *s, size_t len)
{
	size_t r = 0, w = 0;

	while (r < len) {
		char c = s[r++];

		if (c != '\\' || r >= len) {
			s[w++] = c;
			continue;
		}
		c = s[r++];
		if (octal(c) >= 0) {
			int v = octal(c);

			for (int k = 0; k < 2 && r < len && octal(s[r]) >= 0; k++)
				v = v * 8 + octal(s[r++]);
			s[w++] = (char)v;
			continue;
		}
		if (c == 'x' && r < len && hexdig(s[r]) >= 0) {
			int v = hexdig(s[r++]);

			if (r < len && hexdig(s[r]) >= 0)
				v = v * 16 + hexdig(s[r++]);
			s[w++] = (char)v;
			continue;
		}
		switch (c) {
		case 'b':
			c = '\b';
			break;
		case 'f':
			c = '\f';
			break;
		case 'n':
			c = '\n';
			break;
		case 'r':
			c = '\r';
			break;
		case 't':
			c = '\t';
			break;
		case 'v':
			c = '\v';
			break;
		default:
			break;
		}
		s[w++] = c;
	}
	return w;
}

/* Network-order bytes of a parsed value, to run it through the binary path too. */
static size_t to_binary(sp_key_type_t type, const sp_shard_value_t *v, uint8_t *buf)
{
	size_t n;

	switch (type) {
	case SP_KEY_SMALLINT:
		n = 2;
		break;
	case SP_KEY_INTEGER:
		n = 4;
		break;
	case SP_KEY_BIGINT:
		n = 8;
		break;
	case SP_KEY_UUID:
		memcpy(buf, v->uuid, SP_SHARD_UUID_LEN);
		return SP_SHARD_UUID_LEN;
	default:
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((uint64_t)v->i >> (8 * (n - 1 - i)));
	return n;
}

static int parse_only(sp_key_type_t type)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;

	while ((got = getline(&line, &cap, stdin)) > 0) {
		char *tab;
		size_t len;
		sp_shard_value_t v;
		sp_shard_parse_t rc;

		if (line[got - 1] == '\n')
			line[--got] = '\0';
		tab = memchr(line, '\t', (size_t)got);
		if (!tab) {
			fprintf(stderr, "hashcheck: expected an id and a literal\n");
			free(line);
			return 1;
		}
		len = unescape(tab + 1, (size_t)(line + got - (tab + 1)));
		rc = sp_shard_value_from_text(type, tab + 1, len, &v, NULL, 0);
		printf("%.*s\t%s\n", (int)(tab - line), line,
		       rc == SP_SHARD_OK ? "OK" : sp_shard_parse_sqlstate(rc));
	}
	free(line);
	return 0;
}

int main(int argc, char **argv)
{
	sp_key_type_t types[MAX_COLS];
	int n_types = 0, moduli[MAX_MODULI], n_moduli = 0, status = 0;
	char *line = NULL, *spec;
	size_t cap = 0;
	ssize_t got;
	long lineno = 0;

	if (argc == 3 && strcmp(argv[1], "--parse") == 0) {
		if (parse_type(argv[2], &types[0]) != 0) {
			fprintf(stderr, "hashcheck: bad key type '%s'\n", argv[2]);
			return 2;
		}
		return parse_only(types[0]);
	}
	if (argc < 3 || argc - 2 > MAX_MODULI) {
		fprintf(stderr, "usage: hashcheck TYPE[,TYPE...] MODULUS... < keys.tsv\n"
				"       hashcheck --parse TYPE < literals.tsv\n");
		return 2;
	}
	spec = strdup(argv[1]);
	for (char *save = NULL, *t = strtok_r(spec, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (n_types == MAX_COLS || parse_type(t, &types[n_types]) != 0) {
			fprintf(stderr, "hashcheck: bad key type list '%s'\n", argv[1]);
			free(spec);
			return 2;
		}
		n_types++;
	}
	free(spec);
	for (int i = 2; i < argc; i++) {
		moduli[n_moduli] = atoi(argv[i]);
		if (moduli[n_moduli] < 1) {
			fprintf(stderr, "hashcheck: bad modulus '%s'\n", argv[i]);
			return 2;
		}
		n_moduli++;
	}

	while ((got = getline(&line, &cap, stdin)) > 0) {
		sp_shard_value_t values[MAX_COLS];
		bool nulls[MAX_COLS];
		char *fields[MAX_COLS + 1], err[512] = "";
		size_t lens[MAX_COLS + 1];
		int n_fields = 0, bad = 0;
		char *p = line, *end;

		lineno++;
		if (line[got - 1] == '\n')
			line[--got] = '\0';
		end = line + got;
		while (n_fields <= MAX_COLS) {
			char *tab = memchr(p, '\t', (size_t)(end - p));

			fields[n_fields] = p;
			lens[n_fields++] = (size_t)((tab ? tab : end) - p);
			if (!tab)
				break;
			p = tab + 1;
		}
		if (n_fields != n_types + 1) {
			fprintf(stderr,
				"hashcheck: line %ld: %d fields, expected an id and %d keys\n",
				lineno, n_fields, n_types);
			status = 1;
			continue;
		}
		for (int c = 0; c < n_types && !bad; c++) {
			char *f = fields[c + 1];
			size_t len = lens[c + 1];
			uint8_t bin[SP_SHARD_UUID_LEN];
			sp_shard_value_t again;
			size_t bl;

			nulls[c] = len == 2 && f[0] == '\\' && f[1] == 'N';
			if (nulls[c])
				continue;
			len = unescape(f, len);
			if (sp_shard_value_from_text(types[c], f, len, &values[c], err,
						     sizeof(err)) != SP_SHARD_OK) {
				bad = 1;
				break;
			}
			bl = to_binary(types[c], &values[c], bin);
			if (bl && (sp_shard_value_from_binary(types[c], bin, bl, &again, err,
							      sizeof(err)) != SP_SHARD_OK ||
				   sp_shard_hash_value(types[c], &again) !=
				       sp_shard_hash_value(types[c], &values[c]))) {
				fprintf(stderr, "hashcheck: line %ld: binary path disagrees: %s\n",
					lineno, err);
				status = 1;
			}
		}
		fwrite(fields[0], 1, lens[0], stdout);
		if (bad) {
			printf("\tERR %s\n", err);
			continue;
		}
		for (int m = 0; m < n_moduli; m++)
			printf("\t%d", sp_shard_of_keys(types, values, nulls, n_types, moduli[m]));
		putchar('\n');
	}
	free(line);
	if (ferror(stdin) || fflush(stdout) != 0) {
		perror("hashcheck");
		return 1;
	}
	return status;
}
