/*
 * test_resolve.c - the resolver's cache without threads or DNS: lookups are
 * recorded instead of started, answers handed back by hand, time is a variable.
 * Covers what a name is, waiting for a first answer, dns_max_ttl refreshes that
 * keep serving the old answer, failures remembered with a growing retry delay
 * capped at dns_nxdomain_ttl, cancelling, and answers that outlive the cache's.
 */
#include "resolve.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static double clock_now = 1000;
static int starts;
static char last_start[256];
static const char *counted; /* count the lookups of this name only (NULL: all) */

static double fake_now(void)
{
	return clock_now;
}

static void fake_start(const char *name)
{
	if (counted && strcmp(name, counted) != 0)
		return;
	starts++;
	snprintf(last_start, sizeof(last_start), "%s", name);
}

struct waiter {
	sp_resolve_wait_t w;
	int calls;
	int err;
	int n;
	char first[64];
	struct waiter *victim; /* cancelled from inside the callback */
};

static void on_answer(sp_resolve_wait_t *w, sp_resolve_addrs_t *addrs, int err)
{
	struct waiter *x = (struct waiter *)((char *)w - offsetof(struct waiter, w));
	x->calls++;
	x->err = err;
	x->n = addrs ? addrs->n : 0;
	if (addrs)
		sp_resolve_addr_str(&addrs->a[0], x->first, sizeof(x->first));
	if (x->victim)
		sp_resolve_cancel(&x->victim->w);
	sp_resolve_addrs_unref(addrs);
}

/* An answer of one IPv4 and, if v6 is given, one IPv6 address. */
static void deliver_addrs(const char *name, const char *v4, const char *v6)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct addrinfo ai[2];
	memset(ai, 0, sizeof(ai));
	memset(&sin, 0, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, v4, &sin.sin_addr);
	ai[0].ai_family = AF_INET;
	ai[0].ai_socktype = SOCK_STREAM;
	ai[0].ai_addr = (struct sockaddr *)&sin;
	ai[0].ai_addrlen = sizeof(sin);
	if (v6) {
		sin6.sin6_family = AF_INET6;
		inet_pton(AF_INET6, v6, &sin6.sin6_addr);
		ai[1].ai_family = AF_INET6;
		ai[1].ai_socktype = SOCK_STREAM;
		ai[1].ai_addr = (struct sockaddr *)&sin6;
		ai[1].ai_addrlen = sizeof(sin6);
		ai[0].ai_next = &ai[1];
	}
	sp_resolve_deliver(name, 0, ai);
}

static sp_resolve_status_t look(const char *name, struct waiter *x, int *n, char *first,
				size_t flen, int *err)
{
	sp_resolve_addrs_t *a = NULL;
	sp_resolve_status_t st;
	*err = 0;
	*n = 0;
	st = sp_resolve_lookup(name, x ? &x->w : NULL, on_answer, &a, err);
	if (st == SP_RESOLVE_OK) {
		*n = a->n;
		sp_resolve_addr_str(&a->a[0], first, flen);
		sp_resolve_addrs_unref(a);
	}
	return st;
}

static void test_names(void)
{
	ok(sp_resolve_is_name("db1.example.com"), "a host name is looked up");
	ok(sp_resolve_is_name("db-1"), "a short host name is looked up");
	ok(!sp_resolve_is_name("10.1.2.3"), "an IPv4 address is not");
	ok(!sp_resolve_is_name("::1"), "an IPv6 address is not");
	ok(!sp_resolve_is_name("/var/run/postgresql"), "a unix socket directory is not");
	ok(!sp_resolve_is_name("localhost"), "localhost is not (it means 127.0.0.1)");
	ok(!sp_resolve_is_name("") && !sp_resolve_is_name(NULL), "nothing is not");
}

static void test_first_answer(void)
{
	struct waiter a = {0}, b = {0};
	char first[64];
	int n, err;

	starts = 0;
	is_int(look("db1.test", &a, &n, first, sizeof(first), &err), SP_RESOLVE_PENDING,
	       "a name never looked up has no answer yet");
	is_int(starts, 1, "... and its lookup starts");
	is_str(last_start, "db1.test", "... for that name");
	ok(sp_resolve_waiting(&a.w), "... the caller waits");
	is_int(look("db1.test", &b, &n, first, sizeof(first), &err), SP_RESOLVE_PENDING,
	       "a second caller waits too");
	is_int(starts, 1, "... on the same lookup");
	deliver_addrs("db1.test", "10.0.0.1", "fd00::1");
	is_int(a.calls, 1, "the answer calls the first waiter");
	is_int(b.calls, 1, "... and the second");
	is_int(a.n, 2, "... with every address (IPv4 and IPv6)");
	is_str(a.first, "10.0.0.1", "... in getaddrinfo's order");
	ok(!sp_resolve_waiting(&a.w) && !sp_resolve_waiting(&b.w), "... and they wait no more");
	is_int(look("db1.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "the next lookup is answered at once");
	is_int(n, 2, "... with both addresses");
	is_int(starts, 1, "... without asking the resolver");
}

static void test_ttl(void)
{
	char first[64];
	int n, err;
	sp_resolve_addrs_t *held = NULL;

	starts = 0;
	clock_now += 14.9;
	sp_resolve_refresh();
	is_int(starts, 0, "an answer younger than dns_max_ttl is not refreshed");
	sp_resolve_lookup("db1.test", NULL, NULL, &held, &err);
	clock_now += 0.2;
	sp_resolve_refresh();
	is_int(starts, 1, "at dns_max_ttl the refresh timer looks the name up again");
	is_int(look("db1.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "while it runs the last answer is served");
	is_int(starts, 1, "... and no second lookup starts");
	sp_resolve_deliver("db1.test", EAI_AGAIN, NULL);
	is_int(look("db1.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "a refresh the DNS server did not answer keeps the last answer");
	is_str(first, "10.0.0.1", "... the same addresses");
	clock_now += 0.9;
	sp_resolve_refresh();
	is_int(starts, 1, "the failed refresh is not retried before 1 s");
	clock_now += 0.2;
	sp_resolve_refresh();
	is_int(starts, 2, "... but after 1 s");
	deliver_addrs("db1.test", "10.0.0.2", NULL);
	is_int(look("db1.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "a new answer replaces the old");
	is_str(first, "10.0.0.2", "... with its address");
	is_int(n, 1, "... and only its addresses");
	is_int(held->n, 2, "an answer a connection still holds outlives its replacement");
	sp_resolve_addrs_unref(held);
	clock_now += 16;
	is_int(look("db1.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "a stale answer is served to a connection");
	is_int(starts, 3, "... which starts the refresh itself");
	sp_resolve_deliver("db1.test", EAI_NONAME, NULL);
	is_int(look("db1.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_FAILED,
	       "a refresh that says the name is gone drops the addresses");
	is_int(err, EAI_NONAME, "... with the resolver's error");
}

static void test_failures(void)
{
	struct waiter a = {0}, b = {0};
	char first[64];
	int n, err;

	sp_resolve_set_ttl(15, 5);
	starts = 0;
	counted = "gone.test"; /* db1.test is retried in the background meanwhile */
	is_int(look("gone.test", &a, &n, first, sizeof(first), &err), SP_RESOLVE_PENDING,
	       "an unknown name waits");
	sp_resolve_deliver("gone.test", EAI_NONAME, NULL);
	is_int(a.calls, 1, "a failed lookup calls its waiter");
	is_int(a.err, EAI_NONAME, "... with the error");
	is_int(a.n, 0, "... and no addresses");
	is_str(sp_resolve_strerror(EAI_NONAME), gai_strerror(EAI_NONAME),
	       "the error reads as gai_strerror's");
	is_int(look("gone.test", &b, &n, first, sizeof(first), &err), SP_RESOLVE_FAILED,
	       "the failure is remembered: the next caller fails at once");
	ok(!sp_resolve_waiting(&b.w), "... without waiting");
	is_int(starts, 1, "... and without a new lookup");
	/* retries after 1, 2, 4 s, then at most dns_nxdomain_ttl (5 s) apart */
	double delays[] = {1, 2, 4, 5, 5};
	for (int i = 0; i < 5; i++) {
		int before = starts;
		clock_now += delays[i] - 0.05;
		sp_resolve_refresh();
		is_int(starts, before, "failure %d: no retry before %.0f s", i + 1, delays[i]);
		clock_now += 0.1;
		sp_resolve_refresh();
		is_int(starts, before + 1, "failure %d: a retry at %.0f s", i + 1, delays[i]);
		sp_resolve_deliver("gone.test", EAI_NONAME, NULL);
	}
	is_int(look("gone.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_FAILED,
	       "still failing");
	clock_now += 5.1;
	sp_resolve_refresh();
	deliver_addrs("gone.test", "192.0.2.7", NULL);
	is_int(look("gone.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "a name that comes back resolves");
	is_str(first, "192.0.2.7", "... to its address");
	sp_resolve_deliver("gone.test", EAI_AGAIN, NULL); /* a late answer with nothing in flight */
	clock_now += 0.5;
	is_int(look("gone.test", NULL, &n, first, sizeof(first), &err), SP_RESOLVE_OK,
	       "after one good answer a temporary failure does not lose it");
	sp_resolve_deliver("unknown.test", 0, NULL);
	ok(1, "an answer for a name the cache does not hold is ignored");
	sp_resolve_set_ttl(15, 15);
	counted = NULL;
}

static void test_cancel(void)
{
	struct waiter a = {0}, b = {0}, c = {0};
	char first[64];
	int n, err;

	look("slow.test", &a, &n, first, sizeof(first), &err);
	look("slow.test", &b, &n, first, sizeof(first), &err);
	look("slow.test", &c, &n, first, sizeof(first), &err);
	sp_resolve_cancel(&b.w);
	ok(!sp_resolve_waiting(&b.w), "a cancelled waiter waits no more");
	sp_resolve_cancel(&b.w);
	ok(1, "cancelling twice is harmless");
	/* c is called first (newest first); it cancels a, as a closing server may */
	c.victim = &a;
	deliver_addrs("slow.test", "10.9.9.9", NULL);
	is_int(b.calls, 0, "the answer does not reach a cancelled waiter");
	is_int(c.calls, 1, "it reaches the others");
	is_int(a.calls, 0, "... except one a callback cancelled");
	look("slow2.test", &a, &n, first, sizeof(first), &err);
	look("slow3.test", &a, &n, first, sizeof(first), &err);
	sp_resolve_deliver("slow2.test", EAI_AGAIN, NULL);
	is_int(a.calls, 0, "a waiter that asked again for another name left the first");
	sp_resolve_deliver("slow3.test", EAI_AGAIN, NULL);
	is_int(a.calls, 1, "... and is answered for the second");
	is_int(a.err, EAI_AGAIN, "... with its error");
}

int main(void)
{
	sp_resolve_set_hooks(fake_start, fake_now);
	sp_resolve_set_ttl(15, 15);
	test_names();
	test_first_answer();
	test_ttl();
	test_failures();
	test_cancel();
	is_int(sp_resolve_count(), 5, "the cache holds every name asked for");
	sp_resolve_stop();
	is_int(sp_resolve_count(), 0, "stopping forgets them");
	return done_testing();
}
