/*
 * rawclient.c - a raw-socket PostgreSQL client for the integration tests:
 * it sends exactly the bytes a test asks for, including malformed, truncated
 * and hostile ones no driver would produce, and prints what comes back one
 * message a line. It links nothing but libc.
 *
 *   rawclient [HOST:]PORT STEP...
 *
 * Steps run in order:
 *   startup:USER:DB[:NAME=VALUE...]  StartupMessage, protocol 3.0 (3.N with
 *                        _protocol=3.N among the pairs)
 *   auth[:PASSWORD]      answer the authentication exchange, print each
 *                        request and then "login ok" at ReadyForQuery or the
 *                        error; without PASSWORD every answer is wrong (trust
 *                        logins still succeed); with it md5 and cleartext
 *                        requests are answered right, SCRAM never is
 *   ssl, gss             SSLRequest / GSSENCRequest; prints the one-byte answer
 *   cancel:PID:KEY       CancelRequest
 *   Q:SQL  Qnonul:SQL    Query (the second without its terminating NUL)
 *   P:NAME:SQL  B:PORTAL:STMT  E:PORTAL[:MAXROWS]  D:S|P:NAME  C:S|P:NAME  S  H  X
 *   msg:T:HEX            message of type T with that body
 *   hdr:T:LEN            only a message header claiming length LEN
 *   hex:HEX              raw bytes
 *   random:N:SEED        N pseudo-random bytes
 *   read                 print messages until ReadyForQuery, EOF or the timeout
 *   drain                print messages until EOF or the timeout
 *   bytes                count the bytes that arrive until EOF or the timeout
 *   flood:N              N connections that send half a startup packet and vanish
 *   sleep:MS  timeout:MS  close
 *
 * Output lines: "E|N <sqlstate> <message>", "Z <status>", "C <tag>",
 * "D v1|v2", "T c1|c2", "K", "v VERSION opt|opt", a bare letter for the other messages, "closed"
 * at EOF, "reset" when the peer reset the connection, "timeout".
 *
 * Deliberately not here: a correct SCRAM login (it needs HMAC and PBKDF2 this
 * program does not link); tests that need a login use md5 or trust.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port;
static int fd = -1;
static int timeout_ms = 5000;
static int eof_seen;
static char login_user[64] = "";
static const char *password; /* NULL: answer every password request wrongly */

static unsigned char inbuf[1 << 20];
static size_t inlen;

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int open_conn(void)
{
	struct sockaddr_in sa;
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	if (s < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(s);
		return -1;
	}
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return s;
}

static void send_all(const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			printf("send failed: %s\n", strerror(errno));
			return;
		}
		b += w;
		n -= (size_t)w;
	}
}

/* ---------------- building messages ---------------- */

static unsigned char out[1 << 20];
static size_t outlen;

static void put(const void *p, size_t n)
{
	if (outlen + n > sizeof(out)) {
		fprintf(stderr, "message too large\n");
		exit(2);
	}
	memcpy(out + outlen, p, n);
	outlen += n;
}

static void put32(uint32_t v)
{
	v = htonl(v);
	put(&v, 4);
}

static void put16(uint16_t v)
{
	v = htons(v);
	put(&v, 2);
}

static void puts0(const char *s)
{
	put(s, strlen(s) + 1);
}

static size_t msg_begin(char type)
{
	size_t at;
	if (type)
		put(&type, 1);
	at = outlen;
	put32(0);
	return at;
}

static void msg_end(size_t at)
{
	uint32_t len = htonl((uint32_t)(outlen - at));
	memcpy(out + at, &len, 4);
}

static void flush_out(void)
{
	send_all(out, outlen);
	outlen = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void put_hex(const char *h)
{
	while (h[0] && h[1]) {
		unsigned char b = (unsigned char)(hexval(h[0]) << 4 | hexval(h[1]));
		put(&b, 1);
		h += 2;
	}
}

/* ---------------- reading messages ---------------- */

/* Fill the buffer; 1 on data, 0 on EOF, -1 on timeout, -2 on reset. */
static int fill(void)
{
	struct pollfd pfd = {fd, POLLIN, 0};
	ssize_t n;
	int r = poll(&pfd, 1, timeout_ms);
	if (r == 0)
		return -1;
	if (inlen == sizeof(inbuf))
		return -1;
	n = recv(fd, inbuf + inlen, sizeof(inbuf) - inlen, 0);
	if (n == 0) {
		eof_seen = 1;
		return 0;
	}
	if (n < 0)
		return errno == ECONNRESET ? -2 : 0;
	inlen += (size_t)n;
	return 1;
}

static void end_line(int r)
{
	printf("%s\n", r == 0 ? "closed" : r == -2 ? "reset" : "timeout");
}

/* Next whole message into type/body; returns 1, or what fill() said. */
static int next_msg(char *type, unsigned char **body, uint32_t *len)
{
	static unsigned char *msg;
	uint32_t l;
	for (;;) {
		if (inlen >= 5) {
			memcpy(&l, inbuf + 1, 4);
			l = ntohl(l);
			if (l < 4 || l > sizeof(inbuf) - 1) {
				printf("bad message length %u from peer (type %d)\n", l, inbuf[0]);
				return 0;
			}
			if (inlen >= l + 1) {
				free(msg);
				msg = malloc(l);
				*type = (char)inbuf[0];
				memcpy(msg, inbuf + 5, l - 4);
				memmove(inbuf, inbuf + l + 1, inlen - l - 1);
				inlen -= l + 1;
				*body = msg;
				*len = l - 4;
				return 1;
			}
		}
		{
			int r = fill();
			if (r != 1)
				return r;
		}
	}
}

static const char *err_field(const unsigned char *b, uint32_t len, char f)
{
	uint32_t i = 0;
	while (i < len && b[i]) {
		char t = (char)b[i++];
		const char *v = (const char *)b + i;
		i += (uint32_t)strnlen(v, len - i) + 1;
		if (t == f)
			return v;
	}
	return "";
}

static void print_msg(char type, const unsigned char *b, uint32_t len)
{
	switch (type) {
	case 'E':
	case 'N':
		printf("%c %s %s\n", type, err_field(b, len, 'C'), err_field(b, len, 'M'));
		break;
	case 'Z':
		printf("Z %c\n", len ? b[0] : '?');
		break;
	case 'v': { /* NegotiateProtocolVersion: "v VERSION name|name" (3.0 is 196608) */
		uint32_t minor = 0, n = 0, pos = 8;
		if (len >= 8) {
			memcpy(&minor, b, 4);
			memcpy(&n, b + 4, 4);
		}
		printf("v %u ", ntohl(minor));
		for (uint32_t i = 0; i < ntohl(n) && pos < len; i++) {
			size_t l = strnlen((const char *)b + pos, len - pos);
			printf("%s%.*s", i ? "|" : "", (int)l, (const char *)b + pos);
			pos += (uint32_t)l + 1;
		}
		putchar('\n');
		break;
	}
	case 'C':
		printf("C %.*s\n", (int)strnlen((const char *)b, len), (const char *)b);
		break;
	case 'D': {
		uint32_t pos = 2;
		int n = len >= 2 ? (b[0] << 8 | b[1]) : 0;
		printf("D ");
		for (int i = 0; i < n && pos + 4 <= len; i++) {
			int32_t l;
			memcpy(&l, b + pos, 4);
			l = (int32_t)ntohl((uint32_t)l);
			pos += 4;
			if (i)
				putchar('|');
			if (l < 0) {
				printf("NULL");
			} else {
				fwrite(b + pos, 1, (size_t)l, stdout);
				pos += (uint32_t)l;
			}
		}
		putchar('\n');
		break;
	}
	case 'T': {
		uint32_t pos = 2;
		int n = len >= 2 ? (b[0] << 8 | b[1]) : 0;
		printf("T ");
		for (int i = 0; i < n && pos < len; i++) {
			const char *nm = (const char *)b + pos;
			printf("%s%s", i ? "|" : "", nm);
			pos += (uint32_t)strlen(nm) + 1 + 18;
		}
		putchar('\n');
		break;
	}
	case 'S':
	case 'K':
		break; /* ParameterStatus and BackendKeyData: too chatty to compare */
	default:
		printf("%c\n", type);
		break;
	}
	fflush(stdout);
}

/* Print messages until ReadyForQuery (until_rfq) or EOF / timeout. */
static void do_read(int until_rfq)
{
	char type;
	unsigned char *b;
	uint32_t len;
	int r;
	while ((r = next_msg(&type, &b, &len)) == 1) {
		print_msg(type, b, len);
		if (until_rfq && type == 'Z')
			return;
	}
	end_line(r);
}

/* ---------------- MD5 (RFC 1321), for md5 password logins ---------------- */

static const uint32_t md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
static const int md5_r[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};

static void md5_block(uint32_t h[4], const unsigned char *blk)
{
	uint32_t w[16], a = h[0], b = h[1], c = h[2], d = h[3];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)blk[i * 4] | (uint32_t)blk[i * 4 + 1] << 8 | (uint32_t)blk[i * 4 + 2] << 16 |
		       (uint32_t)blk[i * 4 + 3] << 24;
	for (int i = 0; i < 64; i++) {
		uint32_t f, t;
		int g;
		if (i < 16) {
			f = (b & c) | (~b & d);
			g = i;
		} else if (i < 32) {
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
		} else if (i < 48) {
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
		} else {
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
		}
		t = d;
		d = c;
		c = b;
		f += a + md5_k[i] + w[g];
		b += f << md5_r[(i / 16) * 4 + i % 4] | f >> (32 - md5_r[(i / 16) * 4 + i % 4]);
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
}

/* hex MD5 of p[0..n) into hex[33] */
static void md5_hex(const unsigned char *p, size_t n, char *hex)
{
	uint32_t h[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
	unsigned char tail[128];
	size_t i, rest;
	uint64_t bits = (uint64_t)n * 8;
	for (i = 0; i + 64 <= n; i += 64)
		md5_block(h, p + i);
	rest = n - i;
	memset(tail, 0, sizeof(tail));
	memcpy(tail, p + i, rest);
	tail[rest] = 0x80;
	rest = rest < 56 ? 64 : 128;
	for (int k = 0; k < 8; k++)
		tail[rest - 8 + k] = (unsigned char)(bits >> (8 * k));
	md5_block(h, tail);
	if (rest == 128)
		md5_block(h, tail + 64);
	for (int k = 0; k < 16; k++)
		snprintf(hex + 2 * k, 3, "%02x", (unsigned)(h[k / 4] >> (8 * (k % 4))) & 0xff);
}

/* ---------------- authentication ---------------- */

static void send_password(const char *pw, size_t n)
{
	size_t at = msg_begin('p');
	put(pw, n);
	msg_end(at);
	flush_out();
}

static void do_auth(void)
{
	char type;
	unsigned char *b;
	uint32_t len;
	int r;
	while ((r = next_msg(&type, &b, &len)) == 1) {
		if (type == 'R' && len >= 4) {
			uint32_t code;
			memcpy(&code, b, 4);
			code = ntohl(code);
			switch (code) {
			case 0:
				printf("auth: ok\n");
				break;
			case 3:
				printf("auth: cleartext\n");
				if (password)
					send_password(password, strlen(password) + 1);
				else
					send_password("wrong", 6);
				break;
			case 5:
				printf("auth: md5\n");
				if (password && len >= 8) {
					/* "md5" || md5(md5(password || user) || salt) */
					char inner[40], resp[40];
					unsigned char buf[256];
					size_t pl = strlen(password), ul = strlen(login_user);
					if (pl + ul > sizeof(buf) - 40)
						pl = sizeof(buf) - 40 - ul;
					memcpy(buf, password, pl);
					memcpy(buf + pl, login_user, ul);
					md5_hex(buf, pl + ul, inner);
					memcpy(buf, inner, 32);
					memcpy(buf + 32, b + 4, 4);
					md5_hex(buf, 36, resp);
					snprintf((char *)buf, sizeof(buf), "md5%s", resp);
					send_password((const char *)buf, 36);
				} else {
					send_password("md500000000000000000000000000000000", 36);
				}
				break;
			case 10: {
				static const char first[] = "n,,n=,r=rawclientnonce0123456789";
				size_t at;
				printf("auth: SASL %s\n", (const char *)b + 4);
				at = msg_begin('p');
				puts0("SCRAM-SHA-256");
				put32((uint32_t)strlen(first));
				put(first, strlen(first));
				msg_end(at);
				flush_out();
				break;
			}
			case 11: {
				/* a syntactically valid client-final-message with a proof that cannot match */
				char final[512], nonce[256] = "";
				const char *p = strstr((const char *)b + 4, "r=");
				if (p) {
					size_t n = strcspn(p + 2, ",");
					if (n >= sizeof(nonce))
						n = sizeof(nonce) - 1;
					memcpy(nonce, p + 2, n);
					nonce[n] = 0;
				}
				printf("auth: SASL continue\n");
				snprintf(final, sizeof(final), "c=biws,r=%s,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", nonce);
				send_password(final, strlen(final));
				break;
			}
			case 12:
				printf("auth: SASL final\n");
				break;
			default:
				printf("auth: request %u\n", code);
				break;
			}
			fflush(stdout);
			continue;
		}
		if (type == 'Z') {
			printf("login ok\n");
			fflush(stdout);
			return;
		}
		print_msg(type, b, len);
		if (type == 'E') {
			/* after a FATAL the server closes */
			continue;
		}
	}
	end_line(r);
}

/* ---------------- the steps ---------------- */

static void startup(char *arg)
{
	char *save = NULL, *user = strtok_r(arg, ":", &save), *db = strtok_r(NULL, ":", &save), *kv;
	size_t at = msg_begin(0);
	size_t version_at = outlen;
	put32(196608);
	if (user) {
		puts0("user");
		puts0(user);
		snprintf(login_user, sizeof(login_user), "%s", user);
	}
	if (db) {
		puts0("database");
		puts0(db);
	}
	while ((kv = strtok_r(NULL, ":", &save)) != NULL) {
		char *eq = strchr(kv, '=');
		if (!eq)
			continue;
		*eq = 0;
		if (!strcmp(kv, "_protocol")) { /* _protocol=3.N: ask for that version */
			const char *dot = strchr(eq + 1, '.');
			uint32_t v = htonl((3u << 16) | (uint32_t)(dot ? atoi(dot + 1) : 0));
			memcpy(out + version_at, &v, 4);
			continue;
		}
		puts0(kv);
		puts0(eq + 1);
	}
	put("", 1);
	msg_end(at);
	flush_out();
}

static void request_code(uint32_t code)
{
	unsigned char c;
	int r;
	put32(8);
	put32(code);
	flush_out();
	if (inlen == 0 && (r = fill()) != 1) {
		end_line(r);
		return;
	}
	c = inbuf[0];
	memmove(inbuf, inbuf + 1, --inlen);
	printf("answer %c\n", c);
	fflush(stdout);
}

static void flood(int n)
{
	int *fds = calloc((size_t)n, sizeof(int));
	int opened = 0;
	unsigned char pkt[64];
	size_t at;
	outlen = 0;
	at = msg_begin(0);
	put32(196608);
	puts0("user");
	puts0("app");
	puts0("database");
	puts0("app");
	put("", 1);
	msg_end(at);
	memcpy(pkt, out, outlen);
	for (int i = 0; i < n; i++) {
		fds[i] = open_conn();
		if (fds[i] < 0)
			continue;
		opened++;
		/* half a packet, or only a few bytes of the length */
		send(fds[i], pkt, i % 3 == 0 ? 3 : outlen / 2, MSG_NOSIGNAL);
	}
	outlen = 0;
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		if (i % 2) {
			/* an abortive close (RST) for half of them */
			struct linger lg = {1, 0};
			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(fds[i]);
	}
	free(fds);
	printf("flood: %d of %d connections opened and dropped\n", opened, n);
}

static void step(char *s)
{
	char *arg = strchr(s, ':');
	char *save = NULL;
	size_t at;
	if (arg)
		*arg++ = 0;

	if (strcmp(s, "startup") == 0) {
		startup(arg ? arg : (char *)"app:app");
	} else if (strcmp(s, "auth") == 0) {
		/* auth:PASSWORD answers md5 and cleartext requests correctly */
		password = arg;
		do_auth();
	} else if (strcmp(s, "ssl") == 0) {
		request_code(80877103);
	} else if (strcmp(s, "gss") == 0) {
		request_code(80877104);
	} else if (strcmp(s, "cancel") == 0 && arg) {
		char *pid = strtok_r(arg, ":", &save), *key = strtok_r(NULL, ":", &save);
		put32(16);
		put32(80877102);
		put32((uint32_t)atol(pid));
		put32((uint32_t)atol(key ? key : "0"));
		flush_out();
	} else if (strcmp(s, "Q") == 0 || strcmp(s, "Qnonul") == 0) {
		at = msg_begin('Q');
		put(arg ? arg : "", arg ? strlen(arg) : 0);
		if (strcmp(s, "Q") == 0)
			put("", 1);
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "P") == 0) {
		/* strsep, not strtok: an empty name is the unnamed statement */
		char *name = strsep(&arg, ":");
		at = msg_begin('P');
		puts0(name ? name : "");
		puts0(arg ? arg : "");
		put16(0);
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "B") == 0) {
		char *portal = strsep(&arg, ":");
		at = msg_begin('B');
		puts0(portal ? portal : "");
		puts0(arg ? arg : "");
		put16(0);
		put16(0);
		put16(0);
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "E") == 0) {
		char *portal = strsep(&arg, ":");
		at = msg_begin('E');
		puts0(portal ? portal : "");
		put32(arg ? (uint32_t)atol(arg) : 0);
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "D") == 0 || strcmp(s, "C") == 0) {
		char *kind = strsep(&arg, ":");
		at = msg_begin(s[0]);
		put(kind && *kind ? kind : "S", 1);
		puts0(arg ? arg : "");
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "S") == 0 || strcmp(s, "H") == 0 || strcmp(s, "X") == 0) {
		at = msg_begin(s[0]);
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "msg") == 0 && arg) {
		at = msg_begin(arg[0]);
		if (arg[1] == ':')
			put_hex(arg + 2);
		msg_end(at);
		flush_out();
	} else if (strcmp(s, "hdr") == 0 && arg) {
		put(arg, 1);
		put32((uint32_t)strtoul(arg + 2, NULL, 0));
		flush_out();
	} else if (strcmp(s, "hex") == 0 && arg) {
		put_hex(arg);
		flush_out();
	} else if (strcmp(s, "random") == 0 && arg) {
		char *n = strtok_r(arg, ":", &save), *seed = strtok_r(NULL, ":", &save);
		long len = atol(n);
		srandom((unsigned)atol(seed ? seed : "1"));
		for (long i = 0; i < len; i++) {
			unsigned char b = (unsigned char)random();
			put(&b, 1);
			if (outlen == sizeof(out))
				flush_out();
		}
		flush_out();
	} else if (strcmp(s, "read") == 0) {
		do_read(1);
	} else if (strcmp(s, "drain") == 0) {
		do_read(0);
	} else if (strcmp(s, "bytes") == 0) {
		/* count raw bytes until EOF or the timeout, without parsing them */
		int r;
		size_t total = inlen;
		inlen = 0;
		while ((r = fill()) == 1) {
			total += inlen;
			inlen = 0;
		}
		printf("bytes %zu, ", total);
		end_line(r);
	} else if (strcmp(s, "flood") == 0 && arg) {
		flood(atoi(arg));
	} else if (strcmp(s, "sleep") == 0 && arg) {
		sleep_ms(atol(arg));
	} else if (strcmp(s, "timeout") == 0 && arg) {
		timeout_ms = atoi(arg);
	} else if (strcmp(s, "close") == 0) {
		close(fd);
		fd = -1;
	} else {
		fprintf(stderr, "rawclient: unknown step %s\n", s);
		exit(2);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	char *colon;
	if (argc < 2) {
		fprintf(stderr, "usage: rawclient [HOST:]PORT STEP...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	colon = strrchr(argv[1], ':');
	if (colon) {
		*colon = 0;
		host = argv[1];
		port = atoi(colon + 1);
	} else {
		port = atoi(argv[1]);
	}
	fd = open_conn();
	if (fd < 0) {
		printf("connect failed: %s\n", strerror(errno));
		return 1;
	}
	for (int i = 2; i < argc; i++) {
		if (fd < 0 && strncmp(argv[i], "flood", 5) != 0 && strncmp(argv[i], "sleep", 5) != 0) {
			fprintf(stderr, "rawclient: step %s after close\n", argv[i]);
			return 2;
		}
		step(argv[i]);
	}
	if (fd >= 0)
		close(fd);
	return 0;
}
