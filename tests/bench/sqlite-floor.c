/* The least a command that writes one row to a SQLite catalog costs:
 * start a process linked with libsqlite3, open DB as ctool opens its
 * catalog (WAL, busy timeout, defensive, foreign keys, synchronous
 * NORMAL, the WAL kept at close), write one row in a BEGIN IMMEDIATE
 * transaction, close. scripts/bench times it beside 'ctool clone'.
 *
 *   sqlite-floor DB   (DB gets a table 'floor' the first time) */
#include <stdio.h>

#include <sqlite3.h>

static int step(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	fprintf(stderr, "sqlite-floor: %s: %s\n", sql, msg ? msg : "?");
	sqlite3_free(msg);
	return 1;
}

int main(int argc, char **argv)
{
	sqlite3 *db = NULL;
	int one = 1, r;

	if (argc != 2) {
		fputs("usage: sqlite-floor DB\n", stderr);
		return 2;
	}
	if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		fprintf(stderr, "sqlite-floor: %s: %s\n", argv[1], sqlite3_errmsg(db));
		sqlite3_close_v2(db);
		return 1;
	}
	sqlite3_busy_timeout(db, 30000);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	r = step(db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; "
		     "PRAGMA journal_mode = WAL") ||
	    step(db, "BEGIN IMMEDIATE; "
		     "CREATE TABLE IF NOT EXISTS floor (k INTEGER PRIMARY KEY, v TEXT NOT NULL); "
		     "INSERT OR REPLACE INTO floor (k, v) VALUES (1, hex(randomblob(16))); COMMIT");
	sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	sqlite3_close_v2(db);
	return r;
}
