#!/bin/bash
# 63_perl.t - DBD::Pg, the Perl driver, through shardpool in transaction pooling.
#
# DBD::Pg prepares every statement on the server under its own name (dbdpg_pPID_N)
# and, when a statement handle goes away, deallocates it with a plain
# `DEALLOCATE name` query. The Perl program below (run as app, SCRAM, database plain,
# pool of two server connections) checks prepared executions from three processes at
# once, statement handles going away inside and outside transactions, transactions,
# errors and COPY. Each check becomes one TAP line here.
. "$(dirname "$0")/lib.sh"

perl -MDBD::Pg -e 1 2>/dev/null || skip_all "DBD::Pg is not installed (apt-get install libdbd-pg-perl)"


cat >"$SP_TMP/dbdpg.pl" <<'EOF_PERL'
use strict;
use warnings;
use DBI;
$| = 1;
my ($port, $table) = @ARGV;
my $dsn = "dbi:Pg:host=127.0.0.1;port=$port;dbname=plain;connect_timeout=20";
my @warnings;
$SIG{__WARN__} = sub { my $w = shift; $w =~ s/\s+/ /g; push @warnings, $w; };
sub connect_ { DBI->connect($dsn, 'app', 'secret', {RaiseError => 1, PrintError => 0, AutoCommit => 1, @_}) }
sub check { my ($d, $g, $e) = @_; s/[\t\n]/ /g for $d, $g, $e; print "check\t$d\t$g\t$e\n"; }
sub state_of { my $dbh = shift; my $code = shift; eval { $code->(); 1 } ? 'none' : ($dbh->state || $@) }

my $dbh = connect_();
$dbh->do("SET statement_timeout = '20s'");
check('SELECT 1 through shardpool', scalar $dbh->selectrow_array('SELECT 1'), 1);
check('server-side prepare is on', $dbh->{pg_server_prepare}, 1);
$dbh->do("DROP TABLE IF EXISTS $table");
$dbh->do("CREATE TABLE $table (id int PRIMARY KEY, v text NOT NULL)");

# three processes, 300 rounds of two prepared statements each
my @pids;
for my $k (0 .. 2) {
	my $pid = fork();
	if ($pid == 0) {
		my $d = connect_();
		my $s1 = $d->prepare("SELECT ?::int * 4 + $k");
		my $s2 = $d->prepare("SELECT ?::text || ':' || ?::int");
		my $bad = 0;
		for my $i (1 .. 300) {
			$s1->execute($i);
			$bad++ unless ($s1->fetchrow_array)[0] == $i * 4 + $k;
			$s2->execute("p$k", $i);
			$bad++ unless ($s2->fetchrow_array)[0] eq "p$k:$i";
		}
		$d->disconnect;
		POSIX::_exit($bad > 255 ? 255 : $bad);
	}
	push @pids, $pid;
}
my $bad = 0;
for my $p (@pids) { waitpid($p, 0); $bad += $? >> 8; }
check('3 processes x 300 rounds of 2 prepared statements: wrong results', $bad, 0);

# statement handles that go away: DBD::Pg sends DEALLOCATE dbdpg_...
@warnings = ();
for my $k (1 .. 3) {
	my $sth = $dbh->prepare("SELECT ?::int + $k");
	# DBD::Pg prepares a named statement from the second execution on
	for my $i (1 .. 3) { $sth->execute($i); $sth->fetchrow_array; }
	undef $sth;
}
check('statement handles go away without a warning', join(' | ', @warnings), '');
$dbh->{AutoCommit} = 0;
@warnings = ();
my $st = state_of($dbh, sub {
	my $sth = $dbh->prepare("INSERT INTO $table VALUES (?, ?)");
	$sth->execute(1, 'in transaction');
	$sth->execute(3, 'in transaction');
	undef $sth;
	$dbh->do("INSERT INTO $table VALUES (2, 'after the handle went away')");
	$dbh->commit;
});
check('a statement handle going away inside a transaction does not break it', $st, 'none');
eval { $dbh->rollback } if $st ne 'none';
$dbh->{AutoCommit} = 1;
check('... and its rows are committed', scalar $dbh->selectrow_array("SELECT count(*) FROM $table WHERE id IN (1, 2, 3)"), 3);

# transactions
$dbh->begin_work;
$dbh->do("INSERT INTO $table VALUES (10, 'rolled back')");
$dbh->rollback;
check('rolled-back row is gone', scalar $dbh->selectrow_array("SELECT count(*) FROM $table WHERE id = 10"), 0);
$dbh->begin_work;
my $pid1 = $dbh->selectrow_array('SELECT pg_backend_pid()');
$dbh->do("INSERT INTO $table VALUES (11, 'committed')");
check('a transaction stays on one server connection', scalar $dbh->selectrow_array('SELECT pg_backend_pid()'), $pid1);
$dbh->commit;
check('committed row is there', scalar $dbh->selectrow_array("SELECT v FROM $table WHERE id = 11"), 'committed');

# errors
check('division by zero raises 22012', state_of($dbh, sub { $dbh->selectrow_array('SELECT 1/0') }), '22012');
check('the connection works after an error', scalar $dbh->selectrow_array("SELECT 'alive'"), 'alive');
my $div = $dbh->prepare('SELECT 100 / ?::int');
check('a prepared statement raises 22012 with a zero divisor', state_of($dbh, sub { $div->execute(0) }), '22012');
$div->execute(4);
check('... and works again after it', ($div->fetchrow_array)[0], 25);

# COPY
$dbh->do("COPY $table (id, v) FROM STDIN");
$dbh->pg_putcopydata(join('', map { (1000 + $_) . "\tcopy $_\n" } 1 .. 5000));
$dbh->pg_putcopyend;
check('COPY FROM STDIN', scalar $dbh->selectrow_array("SELECT count(*) FROM $table WHERE id > 1000"), 5000);
$dbh->do("COPY (SELECT id FROM $table WHERE id > 1000 ORDER BY id LIMIT 3) TO STDOUT");
my ($line, @out);
push @out, $line while $dbh->pg_getcopydata($line) >= 0;
check('COPY TO STDOUT', join('', @out), "1001\n1002\n1003\n");

$dbh->do("SET lock_timeout = '2s'");
$dbh->do("DROP TABLE $table");
$dbh->disconnect;
print "end\n";
EOF_PERL
sed -i 's/^use DBI;$/use DBI;\nuse POSIX ();/' "$SP_TMP/dbdpg.pl"

sandbox_ensure 2 1
sp_write_config "$SP_TMP/shardpool.ini" pool_mode=transaction default_pool_size=2 \
	max_client_conn=200 shutdown_timeout=5s log_level=${SP_LOG_LEVEL:-info}
sp_start
is "$(sp_psql -d plain -c 'SELECT 1' 2>&1)" 1 "psql through shardpool to plain"
TABLE=perl_t_$$_$RANDOM
at_exit "pg_psql $SB_PRIMARY_PORT_0 -c 'DROP TABLE IF EXISTS $TABLE' >/dev/null 2>&1"
run_checks "DBD::Pg" perl "$SP_TMP/dbdpg.pl" "$SP_PORT" "$TABLE"
done_testing
