#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog.h"
#include "sqlite-load.h"
#include "util.h"

/* How long a command waits for another one holding the write lock. */
#define BUSY_TIMEOUT_MS 30000

struct catalog {
	sqlite3 *db;
	char *path;             /* as given to catalog_open, for messages */
};

/* Schema migrations: migrations[i] takes a catalog from user_version i to
 * i + 1, inside the same transaction that records the new version. To
 * change the schema, append an entry and bump CATALOG_VERSION; never edit
 * an entry that has been released. */
static const char *const migrations[] = {
	/* 1: the initial schema */
	"CREATE TABLE layers (\n"
	"	id TEXT PRIMARY KEY NOT NULL,\n"
	"	origin TEXT NOT NULL,\n"
	"	created INTEGER NOT NULL\n"
	");\n"
	"CREATE TABLE images (\n"
	"	name TEXT PRIMARY KEY NOT NULL,\n"
	"	created INTEGER NOT NULL,\n"
	"	origin TEXT NOT NULL\n"
	");\n"
	"CREATE TABLE image_layers (\n"
	"	image TEXT NOT NULL REFERENCES images (name) ON DELETE CASCADE,\n"
	"	pos INTEGER NOT NULL,\n"
	"	layer TEXT NOT NULL REFERENCES layers (id) ON DELETE RESTRICT,\n"
	"	PRIMARY KEY (image, pos)\n"
	");\n"
	"CREATE INDEX image_layers_layer ON image_layers (layer);\n"
	/* root is NULL for the default <store>/envs/<id>/root; UNIQUE lets
	 * any number of NULLs through */
	"CREATE TABLE envs (\n"
	"	id TEXT PRIMARY KEY NOT NULL,\n"
	"	name TEXT NOT NULL UNIQUE,\n"
	"	image TEXT NOT NULL REFERENCES images (name) ON DELETE RESTRICT,\n"
	"	root TEXT UNIQUE,\n"
	"	driver TEXT NOT NULL,\n"
	"	volatile INTEGER NOT NULL DEFAULT 0,\n"
	"	want_on INTEGER NOT NULL DEFAULT 0,\n"
	"	boot_id TEXT NOT NULL DEFAULT '',\n"
	"	created INTEGER NOT NULL\n"
	");\n"
	"CREATE INDEX envs_image ON envs (image);\n"
	"CREATE TABLE binds (\n"
	"	env TEXT NOT NULL REFERENCES envs (id) ON DELETE CASCADE,\n"
	"	pos INTEGER NOT NULL,\n"
	"	src TEXT NOT NULL,\n"
	"	tgt TEXT NOT NULL,\n"
	"	ro INTEGER NOT NULL DEFAULT 0,\n"
	"	PRIMARY KEY (env, pos),\n"
	"	UNIQUE (env, tgt)\n"
	");\n",
	/* 2: why an env uses the driver it uses ("" when it was asked for) */
	"ALTER TABLE envs ADD COLUMN driver_note TEXT NOT NULL DEFAULT '';\n",
	/* 3: built layers (their build-cache key, the packages a PKG step
	 * installed, their size), an image's config (RUN, ENV, VOLUME), and
	 * the layers and config each env has, kept when its image is rebuilt */
	"ALTER TABLE layers ADD COLUMN cache_key TEXT;\n"
	"ALTER TABLE layers ADD COLUMN packages TEXT NOT NULL DEFAULT '';\n"
	"ALTER TABLE layers ADD COLUMN size INTEGER NOT NULL DEFAULT -1;\n"
	"CREATE UNIQUE INDEX layers_cache_key ON layers (cache_key);\n"
	"ALTER TABLE images ADD COLUMN config TEXT NOT NULL DEFAULT '';\n"
	"ALTER TABLE envs ADD COLUMN config TEXT NOT NULL DEFAULT '';\n"
	"CREATE TABLE env_layers (\n"
	"	env TEXT NOT NULL REFERENCES envs (id) ON DELETE CASCADE,\n"
	"	pos INTEGER NOT NULL,\n"
	"	layer TEXT NOT NULL REFERENCES layers (id) ON DELETE RESTRICT,\n"
	"	PRIMARY KEY (env, pos)\n"
	");\n"
	"CREATE INDEX env_layers_layer ON env_layers (layer);\n"
	"INSERT INTO env_layers (env, pos, layer)"
	" SELECT e.id, l.pos, l.layer FROM envs AS e JOIN image_layers AS l ON l.image = e.image;\n",
};

_Static_assert(ARRAY_SIZE(migrations) == CATALOG_VERSION, "one migration per catalog version");

/* What a failing statement was doing: a foreign key failure means a
 * missing parent row when inserting but a row still in use when deleting. */
enum sql_op {
	SQL_READ,
	SQL_WRITE,
	SQL_DELETE,
};

static void stmt_finalizep(sqlite3_stmt **s)
{
	(void)sqlite3_finalize(*s);
}
#define _cleanup_stmt_ _cleanup_(stmt_finalizep)

/* Milliseconds on the given clock. */
static int64_t clock_ms(clockid_t clock)
{
	struct timespec ts;

	(void)clock_gettime(clock, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The one place a sqlite result code becomes -errno. Fills *e with the
 * connection's message, so call it before anything else (a ROLLBACK)
 * runs on the connection. */
static int sql_fail(struct catalog *c, int rc, enum sql_op op, struct ct_err *e)
{
	const char *msg = sqlite3_errmsg(c->db);
	int sys;

	switch (rc) {
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_UNIQUE:
		return ct_fail(e, EEXIST, "catalog '%s': %s", c->path, msg);
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return ct_fail(e, op == SQL_DELETE ? EBUSY : ENOENT, "catalog '%s': %s", c->path,
			       msg);
	}
	switch (rc & 0xff) {
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return ct_fail(e, EIO, "catalog '%s' is not a valid database: %s", c->path, msg);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return ct_fail(e, EBUSY, "catalog '%s' stayed busy for %d s: %s", c->path,
			       BUSY_TIMEOUT_MS / 1000, msg);
	case SQLITE_NOMEM:
		return ct_fail(e, ENOMEM, "out of memory");
	case SQLITE_FULL:
		return ct_fail(e, ENOSPC, "catalog '%s': %s", c->path, msg);
	case SQLITE_READONLY:
		return ct_fail(e, EROFS, "catalog '%s': %s", c->path, msg);
	case SQLITE_CANTOPEN:
		sys = sqlite3_system_errno(c->db);
		if (sys > 0)
			return ct_fail_errno(e, sys, "cannot open catalog '%s'", c->path);
		return ct_fail(e, EIO, "cannot open catalog '%s': %s", c->path, msg);
	default:
		return ct_fail(e, EIO, "catalog '%s': %s", c->path, msg);
	}
}

/* Fail with -EINVAL unless s (with its NUL) fits a field of size bytes:
 * what the catalog stores must read back into its struct untruncated. */
static int str_fits(const char *what, const char *s, size_t size, struct ct_err *e)
{
	size_t n = strnlen(s, size);

	if (n >= size)
		return ct_fail(e, EINVAL, "%s '%.40s...' is too long (at most %zu bytes)", what, s,
			       size - 1);
	return 0;
}

/* Copy text column i of the current row into dst[size] ("" for NULL).
 * -EIO when it does not fit: the writers guard against that, so only a
 * foreign or damaged catalog gets here. */
static int col_text(struct catalog *c, sqlite3_stmt *s, int i, char *dst, size_t size,
		    struct ct_err *e)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	size_t n = (size_t)sqlite3_column_bytes(s, i);

	if (!t) {
		if (sqlite3_column_type(s, i) != SQLITE_NULL)
			return ct_fail(e, ENOMEM, "out of memory");
		dst[0] = '\0';
		return 0;
	}
	if (n >= size)
		return ct_fail(e, EIO, "catalog '%s': column '%s' holds %zu bytes, more than %zu",
			       c->path, sqlite3_column_name(s, i), n, size - 1);
	memcpy(dst, t, n);
	dst[n] = '\0';
	return 0;
}

/* Make room for element n in the array v of *cap elements of size bytes.
 * Returns the (maybe moved) array, or NULL with v untouched. */
static void *array_grow(void *v, size_t *cap, size_t n, size_t size)
{
	size_t want;
	void *p;

	if (n < *cap)
		return v;
	want = *cap ? *cap * 2 : 8;
	if (want > SIZE_MAX / size)
		return NULL;
	p = realloc(v, want * size);
	if (p)
		*cap = want;
	return p;
}

/* Prepare sql into *ret and bind one parameter per character of types,
 * taken from ap: 't' const char * (NULL binds NULL), 'n' const char *
 * with "" bound as NULL, 'i' int64_t, 'b' int (a bool). The strings must
 * outlive the statement. */
static int sql_vprepare(struct catalog *c, sqlite3_stmt **ret, struct ct_err *e, const char *sql,
			const char *types, va_list ap)
{
	sqlite3_stmt *s = NULL;
	const char *t;
	int rc, r, i;

	rc = sqlite3_prepare_v3(c->db, sql, -1, 0, &s, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(c, rc, SQL_READ, e);
	if ((size_t)sqlite3_bind_parameter_count(s) != strlen(types))
		rc = SQLITE_MISUSE;
	for (i = 0; rc == SQLITE_OK && types[i]; i++) {
		switch (types[i]) {
		case 't':
		case 'n':
			t = va_arg(ap, const char *);
			if (!t || (types[i] == 'n' && !*t))
				rc = sqlite3_bind_null(s, i + 1);
			else
				rc = sqlite3_bind_text(s, i + 1, t, -1, SQLITE_STATIC);
			break;
		case 'i':
			rc = sqlite3_bind_int64(s, i + 1, va_arg(ap, int64_t));
			break;
		case 'b':
			rc = sqlite3_bind_int(s, i + 1, va_arg(ap, int) != 0);
			break;
		default:
			rc = SQLITE_MISUSE;
		}
	}
	if (rc != SQLITE_OK) {
		if (rc == SQLITE_MISUSE)
			r = ct_fail(e, EINVAL, "catalog: bad parameters for '%s'", sql);
		else
			r = sql_fail(c, rc, SQL_READ, e);
		(void)sqlite3_finalize(s);
		return r;
	}
	*ret = s;
	return 0;
}

static int sql_prepare(struct catalog *c, sqlite3_stmt **ret, struct ct_err *e, const char *sql,
		       const char *types, ...)
{
	va_list ap;
	int r;

	va_start(ap, types);
	r = sql_vprepare(c, ret, e, sql, types, ap);
	va_end(ap);
	return r;
}

/* Step s: 1 with a row, 0 when done, or -errno. */
static int sql_step(struct catalog *c, sqlite3_stmt *s, enum sql_op op, struct ct_err *e)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_fail(c, rc, op, e);
}

/* Run a statement that returns no rows (see sql_vprepare for types).
 * Returns the number of rows it changed, or -errno. */
static int sql_run(struct catalog *c, enum sql_op op, struct ct_err *e, const char *sql,
		   const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	va_list ap;
	int r;

	va_start(ap, types);
	r = sql_vprepare(c, &s, e, sql, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	r = sql_step(c, s, op, e);
	if (r < 0)
		return r;
	return sqlite3_changes(c->db);
}

/* Run a query and store the first column of its first row, an integer,
 * in *ret (0 when there is no row). Returns 0 or -errno. */
static int sql_int(struct catalog *c, int64_t *ret, struct ct_err *e, const char *sql,
		   const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	va_list ap;
	int r;

	va_start(ap, types);
	r = sql_vprepare(c, &s, e, sql, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	r = sql_step(c, s, SQL_READ, e);
	if (r < 0)
		return r;
	*ret = r ? sqlite3_column_int64(s, 0) : 0;
	return 0;
}

/* Start a write transaction. BEGIN IMMEDIATE takes the write lock at
 * once, waiting through the busy handler, so no statement inside can
 * later fail for want of it (a deferred BEGIN could, without waiting). */
static int tx_begin(struct catalog *c, struct ct_err *e)
{
	int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sql_fail(c, rc, SQL_READ, e);
}

/* End the transaction tx_begin started: commit when r is 0, else roll
 * back. Returns r, or the error of a failed commit. */
static int tx_end(struct catalog *c, int r, struct ct_err *e)
{
	int rc;

	if (r >= 0) {
		rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			return r;
		r = sql_fail(c, rc, SQL_WRITE, e);
	}
	/* some errors (I/O, out of memory) already rolled back */
	if (!sqlite3_get_autocommit(c->db))
		(void)sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

/* One statement in a write transaction of its own. Returns the number of
 * rows it changed, or -errno. */
static int sql_write(struct catalog *c, enum sql_op op, struct ct_err *e, const char *sql,
		     const char *types, ...)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	va_list ap;
	int r;

	va_start(ap, types);
	r = sql_vprepare(c, &s, e, sql, types, ap);
	va_end(ap);
	if (r < 0)
		return r;
	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = sql_step(c, s, op, e);
	if (r >= 0)
		r = sqlite3_changes(c->db);
	(void)sqlite3_reset(s);         /* done with it before COMMIT */
	return tx_end(c, r, e);
}

/* Read the schema version into *ret. A catalog from a newer ctool gives
 * -EPROTO; callers check before anything writes to the file. */
static int catalog_version(struct catalog *c, int64_t *ret, struct ct_err *e)
{
	int64_t v;
	int r;

	r = sql_int(c, &v, e, "PRAGMA user_version", "");
	if (r < 0)
		return r;
	if (v > CATALOG_VERSION)
		return ct_fail(e, EPROTO,
			       "catalog '%s' is from a newer ctool (version %" PRId64
			       ", this one knows %d)",
			       c->path, v, CATALOG_VERSION);
	if (v < 0)
		return ct_fail(e, EIO, "catalog '%s' has an invalid version %" PRId64, c->path, v);
	*ret = v;
	return 0;
}

/* The body of catalog_migrate, under the write lock. The version is read
 * again: another process may have migrated since catalog_open looked. */
static int catalog_migrate_locked(struct catalog *c, struct ct_err *e)
{
	char sql[64];
	int64_t v, n;
	int rc, r;

	r = catalog_version(c, &v, e);
	if (r < 0)
		return r;
	if (v == 0) {
		r = sql_int(c, &n, e, "SELECT count(*) FROM sqlite_master", "");
		if (r < 0)
			return r;
		if (n > 0)
			return ct_fail(e, EIO,
				       "catalog '%s' is not a ctool catalog: "
				       "it has tables but no version",
				       c->path);
	}
	if (v == CATALOG_VERSION)
		return 0;
	for (; v < CATALOG_VERSION; v++) {
		rc = sqlite3_exec(c->db, migrations[v], NULL, NULL, NULL);
		if (rc != SQLITE_OK)
			return sql_fail(c, rc, SQL_WRITE, e);
	}
	(void)snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", CATALOG_VERSION);
	rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : sql_fail(c, rc, SQL_WRITE, e);
}

/* Bring the schema up to CATALOG_VERSION in one write transaction. */
static int catalog_migrate(struct catalog *c, struct ct_err *e)
{
	int r;

	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = catalog_migrate_locked(c, e);
	return tx_end(c, r, e);
}

/* Run a journal_mode pragma and say whether the mode it reports is WAL. */
static int journal_is_wal(struct catalog *c, const char *sql, bool *ret, struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	const char *mode;
	int r;

	r = sql_prepare(c, &s, e, sql, "");
	if (r < 0)
		return r;
	r = sql_step(c, s, SQL_WRITE, e);
	if (r < 0)
		return r;
	mode = r ? (const char *)sqlite3_column_text(s, 0) : NULL;
	*ret = mode && strcmp(mode, "wal") == 0;
	return 0;
}

/* Put a file catalog in WAL mode, so readers never wait for the writer.
 * The switch needs an exclusive lock and, when many processes open a
 * fresh catalog at once, can report busy despite the busy handler: retry
 * it within the busy timeout. A filesystem that cannot do WAL keeps the
 * rollback journal, which is slower but just as correct. */
static int catalog_set_wal(struct catalog *c, struct ct_err *e)
{
	const char *file = sqlite3_db_filename(c->db, "main");
	int64_t deadline = clock_ms(CLOCK_MONOTONIC) + BUSY_TIMEOUT_MS;
	struct timespec pause;
	bool wal;
	int r, i;

	if (!file || !*file)
		return 0;       /* in memory */
	for (i = 0;; i++) {
		r = journal_is_wal(c, "PRAGMA journal_mode", &wal, e);
		if (r == 0 && !wal)
			r = journal_is_wal(c, "PRAGMA journal_mode = WAL", &wal, e);
		if (r != -EBUSY || clock_ms(CLOCK_MONOTONIC) >= deadline)
			return r;
		pause.tv_sec = 0;
		pause.tv_nsec = (2 + (getpid() + i) % 16) * 1000000L;
		(void)nanosleep(&pause, NULL);
	}
}

/* Every ctool command is a short process that would, as the last
 * connection, checkpoint and delete the WAL at close: two extra syncs
 * and a file recreated per command. Keep the WAL file and checkpoint
 * every few dozen commits instead (wal_trim), which also keeps the WAL
 * short: each new process reads all of it at open. */
/* After a commit: once the WAL holds 64 frames, copy them into the
 * database and truncate the WAL. A passive checkpoint alone is not
 * enough here: the WAL only restarts when a later writer finds it fully
 * copied, which these one-transaction processes did not do, so it grew
 * without end (and every new process reads all of it at open). */
static int wal_trim(void *data, sqlite3 *db, const char *name, int frames)
{
	(void)data;
	if (frames < 64)
		return SQLITE_OK;
	/* without waiting: when other processes are in the WAL, a later
	 * commit trims it */
	(void)sqlite3_busy_timeout(db, 0);
	(void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	(void)sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	return SQLITE_OK;
}

static void catalog_keep_wal(struct catalog *c)
{
	int one = 1;

	(void)sqlite3_file_control(c->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
	(void)sqlite3_db_config(c->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	(void)sqlite3_wal_hook(c->db, wal_trim, NULL);
}

/* Open the connection and set it up; nothing here reads or writes the
 * file yet. */
static int catalog_connect(struct catalog *c, struct ct_err *e)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int rc;

#ifdef SQLITE_OPEN_EXRESCODE
	flags |= SQLITE_OPEN_EXRESCODE;
#endif
	rc = sqlite3_open_v2(c->path, &c->db, flags, NULL);
	if (!c->db)
		return ct_fail(e, ENOMEM, "out of memory");
	if (rc != SQLITE_OK)
		return sql_fail(c, rc, SQL_READ, e);
	rc = sqlite3_extended_result_codes(c->db, 1);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	if (rc == SQLITE_OK)
		rc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
	if (rc == SQLITE_OK)
		rc = sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
#endif
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL",
				  NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : sql_fail(c, rc, SQL_READ, e);
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	(void)sqlite3_close_v2(c->db);
	free(c->path);
	free(c);
}

static void catalog_closep(struct catalog **c)
{
	catalog_close(*c);
}

/* The version is checked before any write (migration, the switch to
 * WAL), so a catalog that is refused is left as it was. */
int catalog_open(const char *path, struct catalog **ret, struct ct_err *e)
{
	_cleanup_(catalog_closep) struct catalog *c = NULL;
	int64_t version;
	int r;

	r = sqlite_load(e);
	if (r < 0)
		return r;
	c = calloc(1, sizeof(*c));
	if (!c)
		return ct_fail(e, ENOMEM, "out of memory");
	c->path = strdup(path);
	if (!c->path)
		return ct_fail(e, ENOMEM, "out of memory");
	r = catalog_connect(c, e);
	if (r < 0)
		return r;
	r = catalog_version(c, &version, e);
	if (r < 0)
		return r;
	if (version < CATALOG_VERSION) {
		r = catalog_migrate(c, e);
		if (r < 0)
			return r;
	}
	r = catalog_set_wal(c, e);
	if (r < 0)
		return r;
	catalog_keep_wal(c);
	*ret = TAKE_PTR(c);
	return 0;
}

/* Layers */

#define LAYER_ID_SIZE sizeof(((struct catalog_image *)NULL)->layers[0])

static int layer_add_locked(struct catalog *c, const struct catalog_layer *l, struct ct_err *e)
{
	int64_t n;
	int r;

	r = sql_int(c, &n, e, "SELECT count(*) FROM layers WHERE id = ?1", "t", l->id);
	if (r < 0)
		return r;
	if (n > 0)
		return ct_fail(e, EEXIST, "a layer '%s' already exists", l->id);
	if (l->cache_key[0]) {
		r = sql_run(c, SQL_WRITE, e, "UPDATE layers SET cache_key = NULL WHERE cache_key = ?1",
			    "t", l->cache_key);
		if (r < 0)
			return r;
	}
	r = sql_run(c, SQL_WRITE, e,
		    "INSERT INTO layers (id, origin, created, cache_key, packages, size)"
		    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
		    "ttinti", l->id, l->origin,
		    l->created ? l->created : clock_ms(CLOCK_REALTIME), l->cache_key,
		    l->packages ? l->packages : "", l->size);
	return r < 0 ? r : 0;
}

/* Does what l holds fit its fields? */
static int layer_fits(const struct catalog_layer *l, struct ct_err *e)
{
	int r = str_fits("layer id", l->id, sizeof(l->id), e);

	if (r == 0)
		r = str_fits("layer origin", l->origin, sizeof(l->origin), e);
	if (r == 0)
		r = str_fits("cache key", l->cache_key, sizeof(l->cache_key), e);
	return r;
}

int catalog_layer_put(struct catalog *c, const struct catalog_layer *l, struct ct_err *e)
{
	int r;

	r = layer_fits(l, e);
	if (r < 0)
		return r;
	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = layer_add_locked(c, l, e);
	return tx_end(c, r, e);
}

int catalog_layer_add(struct catalog *c, const char *id, const char *origin, struct ct_err *e)
{
	struct catalog_layer l = { .size = -1 };
	int r;

	r = str_fits("layer id", id, sizeof(l.id), e);
	if (r == 0)
		r = str_fits("layer origin", origin, sizeof(l.origin), e);
	if (r < 0)
		return r;
	strcpy(l.id, id);
	strcpy(l.origin, origin);
	return catalog_layer_put(c, &l, e);
}

void catalog_layer_clear(struct catalog_layer *l)
{
	free(l->packages);
	l->packages = NULL;
}

int catalog_layer_get(struct catalog *c, const char *id, bool by_key, struct catalog_layer *ret,
		      struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	struct catalog_layer l = { 0 };
	const char *pk;
	int r;

	r = sql_prepare(c, &s, e,
			by_key ? "SELECT id, origin, cache_key, size, created, packages FROM layers"
				 " WHERE cache_key = ?1"
			       : "SELECT id, origin, cache_key, size, created, packages FROM layers"
				 " WHERE id = ?1",
			"t", id);
	if (r < 0)
		return r;
	r = sql_step(c, s, SQL_READ, e);
	if (r < 0)
		return r;
	if (r == 0)
		return ct_fail(e, ENOENT, by_key ? "no layer with key '%s'" : "no layer '%s'", id);
	r = col_text(c, s, 0, l.id, sizeof(l.id), e);
	if (r == 0)
		r = col_text(c, s, 1, l.origin, sizeof(l.origin), e);
	if (r == 0)
		r = col_text(c, s, 2, l.cache_key, sizeof(l.cache_key), e);
	if (r < 0)
		return r;
	l.size = sqlite3_column_int64(s, 3);
	l.created = sqlite3_column_int64(s, 4);
	pk = (const char *)sqlite3_column_text(s, 5);
	if (pk && *pk) {
		l.packages = strdup(pk);
		if (!l.packages)
			return ct_fail(e, ENOMEM, "out of memory");
	}
	*ret = l;
	return 0;
}

int catalog_layer_set_size(struct catalog *c, const char *id, int64_t size, struct ct_err *e)
{
	int r = sql_write(c, SQL_WRITE, e, "UPDATE layers SET size = ?1 WHERE id = ?2", "it", size,
			  id);

	if (r == 0)
		return ct_fail(e, ENOENT, "no layer '%s'", id);
	return r < 0 ? r : 0;
}

int catalog_layer_used(struct catalog *c, const char *id, bool *ret_used, struct ct_err *e)
{
	int64_t n;
	int r;

	r = sql_int(c, &n, e,
		    "SELECT EXISTS (SELECT 1 FROM image_layers WHERE layer = ?1)"
		    " OR EXISTS (SELECT 1 FROM env_layers WHERE layer = ?1)",
		    "t", id);
	if (r < 0)
		return r;
	*ret_used = n != 0;
	return 0;
}

static int layer_remove_locked(struct catalog *c, const char *id, struct ct_err *e)
{
	int64_t n;
	int r;

	r = sql_int(c, &n, e, "SELECT count(DISTINCT image) FROM image_layers WHERE layer = ?1",
		    "t", id);
	if (r < 0)
		return r;
	if (n > 0)
		return ct_fail(e, EBUSY, "layer '%s' is used by %" PRId64 " image(s)", id, n);
	r = sql_int(c, &n, e, "SELECT count(DISTINCT env) FROM env_layers WHERE layer = ?1", "t",
		    id);
	if (r < 0)
		return r;
	if (n > 0)
		return ct_fail(e, EBUSY, "layer '%s' is used by %" PRId64 " env(s)", id, n);
	r = sql_run(c, SQL_DELETE, e, "DELETE FROM layers WHERE id = ?1", "t", id);
	if (r == 0)
		return ct_fail(e, ENOENT, "no layer '%s'", id);
	return r < 0 ? r : 0;
}

int catalog_layer_remove(struct catalog *c, const char *id, struct ct_err *e)
{
	int r;

	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = layer_remove_locked(c, id, e);
	return tx_end(c, r, e);
}

/* Images */

void catalog_image_clear(struct catalog_image *img)
{
	free(img->layers);
	img->layers = NULL;
	img->n_layers = 0;
	free(img->config);
	img->config = NULL;
}

static void images_free(struct catalog_image *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		catalog_image_clear(&v[i]);
	free(v);
}

/* Append the layer in column i of the current row to img. */
static int image_push_layer(struct catalog *c, sqlite3_stmt *s, int i, struct catalog_image *img,
			    struct ct_err *e)
{
	char(*p)[LAYER_ID_SIZE];

	p = realloc(img->layers, (img->n_layers + 1) * sizeof(*p));
	if (!p)
		return ct_fail(e, ENOMEM, "out of memory");
	img->layers = p;
	img->n_layers++;
	return col_text(c, s, i, p[img->n_layers - 1], sizeof(*p), e);
}

/* Load the image named name, or all images when name is NULL, in name
 * order and each with its layers bottom first, in one statement (so one
 * snapshot). *ret is an array of *ret_n images to free with images_free. */
static int images_load(struct catalog *c, const char *name, struct catalog_image **ret,
		       size_t *ret_n, struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	struct catalog_image *v = NULL, *img = NULL, *p;
	char row_name[sizeof(v->name)];
	size_t n = 0, cap = 0;
	int r;

	r = sql_prepare(c, &s, e,
			"SELECT i.name, i.created, i.origin, l.layer, i.config,"
			" (SELECT CASE WHEN min(y.size) < 0 THEN -1 ELSE coalesce(sum(y.size), 0) END"
			"  FROM image_layers AS x JOIN layers AS y ON y.id = x.layer"
			"  WHERE x.image = i.name) FROM images AS i"
			" LEFT JOIN image_layers AS l ON l.image = i.name"
			" WHERE ?1 IS NULL OR i.name = ?1 ORDER BY i.name, l.pos",
			"t", name);
	if (r < 0)
		return r;
	while ((r = sql_step(c, s, SQL_READ, e)) > 0) {
		r = col_text(c, s, 0, row_name, sizeof(row_name), e);
		if (r < 0)
			break;
		if (!img || strcmp(img->name, row_name) != 0) {
			p = array_grow(v, &cap, n, sizeof(*v));
			if (!p) {
				r = ct_fail(e, ENOMEM, "out of memory");
				break;
			}
			v = p;
			img = &v[n++];
			memset(img, 0, sizeof(*img));
			memcpy(img->name, row_name, sizeof(img->name));
			img->created = sqlite3_column_int64(s, 1);
			img->size = sqlite3_column_int64(s, 5);
			r = col_text(c, s, 2, img->origin, sizeof(img->origin), e);
			if (r < 0)
				break;
			if (sqlite3_column_bytes(s, 4) > 0) {
				img->config = strdup((const char *)sqlite3_column_text(s, 4));
				if (!img->config) {
					r = ct_fail(e, ENOMEM, "out of memory");
					break;
				}
			}
		}
		if (sqlite3_column_type(s, 3) != SQLITE_NULL) {
			r = image_push_layer(c, s, 3, img, e);
			if (r < 0)
				break;
		}
	}
	if (r < 0) {
		images_free(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int image_add_locked(struct catalog *c, const struct catalog_image *img, bool replace,
			    struct ct_err *e)
{
	int64_t n, created = img->created ? img->created : clock_ms(CLOCK_REALTIME);
	const char *config = img->config ? img->config : "";
	size_t i;
	int r;

	r = sql_int(c, &n, e, "SELECT count(*) FROM images WHERE name = ?1", "t", img->name);
	if (r < 0)
		return r;
	if (n > 0 && !replace)
		return ct_fail(e, EEXIST, "an image named '%s' already exists", img->name);
	if (n > 0) {
		r = sql_run(c, SQL_DELETE, e, "DELETE FROM image_layers WHERE image = ?1", "t",
			    img->name);
		if (r >= 0)
			r = sql_run(c, SQL_WRITE, e,
				    "UPDATE images SET created = ?2, origin = ?3, config = ?4"
				    " WHERE name = ?1",
				    "titt", img->name, created, img->origin, config);
	} else {
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO images (name, created, origin, config) VALUES (?1, ?2, ?3, ?4)",
			    "titt", img->name, created, img->origin, config);
	}
	for (i = 0; r >= 0 && i < img->n_layers; i++) {
		r = sql_int(c, &n, e, "SELECT count(*) FROM layers WHERE id = ?1", "t",
			    img->layers[i]);
		if (r < 0)
			return r;
		if (n == 0)
			return ct_fail(e, ENOENT, "no layer '%s'", img->layers[i]);
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO image_layers (image, pos, layer) VALUES (?1, ?2, ?3)",
			    "tit", img->name, (int64_t)i, img->layers[i]);
	}
	return r < 0 ? r : 0;
}

/* Does what img holds fit its fields? */
static int image_fits(const struct catalog_image *img, struct ct_err *e)
{
	size_t i;
	int r;

	r = str_fits("image name", img->name, sizeof(img->name), e);
	if (r == 0)
		r = str_fits("image origin", img->origin, sizeof(img->origin), e);
	for (i = 0; r == 0 && i < img->n_layers; i++)
		r = str_fits("layer id", img->layers[i], LAYER_ID_SIZE, e);
	return r;
}

static int image_put(struct catalog *c, const struct catalog_image *img, bool replace,
		     struct ct_err *e)
{
	int r;

	r = image_fits(img, e);
	if (r < 0)
		return r;
	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = image_add_locked(c, img, replace, e);
	return tx_end(c, r, e);
}

int catalog_image_add(struct catalog *c, const struct catalog_image *img, struct ct_err *e)
{
	return image_put(c, img, false, e);
}

int catalog_image_put(struct catalog *c, const struct catalog_image *img, struct ct_err *e)
{
	return image_put(c, img, true, e);
}

/* *ret is only written on success; the caller clears it. */
int catalog_image_get(struct catalog *c, const char *name, struct catalog_image *ret,
		      struct ct_err *e)
{
	struct catalog_image *v;
	size_t n;
	int r;

	r = images_load(c, name, &v, &n, e);
	if (r < 0)
		return r;
	if (n == 0) {
		free(v);
		return ct_fail(e, ENOENT, "no image named '%s'", name);
	}
	*ret = v[0];            /* takes v[0].layers; n is 1 */
	free(v);
	return 0;
}

/* The images are read before the first call, so cb may change the
 * catalog (remove images, say) without upsetting the walk. */
int catalog_image_foreach(struct catalog *c,
			  int (*cb)(const struct catalog_image *img, void *data), void *data,
			  struct ct_err *e)
{
	struct catalog_image *v;
	size_t n, i;
	int r;

	r = images_load(c, NULL, &v, &n, e);
	if (r < 0)
		return r;
	for (i = 0; r == 0 && i < n; i++)
		r = cb(&v[i], data);
	images_free(v, n);
	return r;
}

int catalog_image_users(struct catalog *c, const char *name, int *ret_count, struct ct_err *e)
{
	int64_t n;
	int r;

	r = sql_int(c, &n, e, "SELECT count(*) FROM envs WHERE image = ?1", "t", name);
	if (r < 0)
		return r;
	*ret_count = (int)n;
	return 0;
}

static int image_remove_locked(struct catalog *c, const char *name, struct ct_err *e)
{
	int64_t n;
	int r;

	r = sql_int(c, &n, e, "SELECT count(*) FROM envs WHERE image = ?1", "t", name);
	if (r < 0)
		return r;
	if (n > 0)
		return ct_fail(e, EBUSY, "image '%s' is used by %" PRId64 " env(s)", name, n);
	r = sql_run(c, SQL_DELETE, e, "DELETE FROM images WHERE name = ?1", "t", name);
	if (r == 0)
		return ct_fail(e, ENOENT, "no image named '%s'", name);
	return r < 0 ? r : 0;
}

int catalog_image_remove(struct catalog *c, const char *name, struct ct_err *e)
{
	int r;

	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = image_remove_locked(c, name, e);
	return tx_end(c, r, e);
}

/* Environments */

#define ENV_SELECT \
	"SELECT id, name, image, root, driver, volatile, want_on, boot_id, created, driver_note " \
	"FROM envs"

/* Fill env from the current row of an ENV_SELECT statement. */
static int env_from_row(struct catalog *c, sqlite3_stmt *s, struct catalog_env *env,
			struct ct_err *e)
{
	int r;

	memset(env, 0, sizeof(*env));
	r = col_text(c, s, 0, env->id, sizeof(env->id), e);
	if (r == 0)
		r = col_text(c, s, 1, env->name, sizeof(env->name), e);
	if (r == 0)
		r = col_text(c, s, 2, env->image, sizeof(env->image), e);
	if (r == 0)
		r = col_text(c, s, 3, env->root, sizeof(env->root), e);
	if (r == 0)
		r = col_text(c, s, 4, env->driver, sizeof(env->driver), e);
	if (r == 0)
		r = col_text(c, s, 7, env->boot_id, sizeof(env->boot_id), e);
	if (r == 0)
		r = col_text(c, s, 9, env->driver_note, sizeof(env->driver_note), e);
	env->volatile_ = sqlite3_column_int(s, 5) != 0;
	env->want_on = sqlite3_column_int(s, 6) != 0;
	env->created = sqlite3_column_int64(s, 8);
	return r;
}

/* Load the envs an ENV_SELECT query finds; arg, when not NULL, binds its
 * one parameter. *ret is a malloc'd array of *ret_n envs. */
static int envs_load(struct catalog *c, const char *sql, const char *arg,
		     struct catalog_env **ret, size_t *ret_n, struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	_cleanup_free_ struct catalog_env *v = NULL;
	struct catalog_env *p;
	size_t n = 0, cap = 0;
	int r;

	r = sql_prepare(c, &s, e, sql, arg ? "t" : "", arg);
	if (r < 0)
		return r;
	while ((r = sql_step(c, s, SQL_READ, e)) > 0) {
		p = array_grow(v, &cap, n, sizeof(*v));
		if (!p)
			return ct_fail(e, ENOMEM, "out of memory");
		v = p;
		r = env_from_row(c, s, &v[n++], e);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* The one env an ENV_SELECT query with parameter arg finds, into *ret
 * (written only on success); -ENOENT "no env <how> '<arg>'" otherwise. */
static int env_load_one(struct catalog *c, const char *sql, const char *arg,
			struct catalog_env *ret, const char *how, struct ct_err *e)
{
	_cleanup_free_ struct catalog_env *v = NULL;
	size_t n;
	int r;

	r = envs_load(c, sql, arg, &v, &n, e);
	if (r < 0)
		return r;
	if (n == 0)
		return ct_fail(e, ENOENT, "no env %s '%s'", how, arg);
	*ret = v[0];
	return 0;
}

static int env_add_locked(struct catalog *c, const struct catalog_env *env, struct ct_err *e)
{
	int64_t n, created = env->created ? env->created : clock_ms(CLOCK_REALTIME);
	int r;

	r = sql_int(c, &n, e, "SELECT count(*) FROM envs WHERE name = ?1", "t", env->name);
	if (r < 0)
		return r;
	if (n > 0)
		return ct_fail(e, EEXIST, "an env named '%s' already exists", env->name);
	if (env->root[0]) {
		r = sql_int(c, &n, e, "SELECT count(*) FROM envs WHERE root = ?1", "t", env->root);
		if (r < 0)
			return r;
		if (n > 0)
			return ct_fail(e, EEXIST, "root '%s' is already used by another env",
				       env->root);
	}
	r = sql_int(c, &n, e, "SELECT count(*) FROM images WHERE name = ?1", "t", env->image);
	if (r < 0)
		return r;
	if (n == 0)
		return ct_fail(e, ENOENT, "no image named '%s'", env->image);
	r = sql_run(c, SQL_WRITE, e,
		    "INSERT INTO envs (id, name, image, root, driver, volatile, want_on, boot_id,"
		    " created, driver_note, config) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
		    " coalesce((SELECT config FROM envs WHERE id = ?11),"
		    " (SELECT config FROM images WHERE name = ?3), ''))",
		    "tttntbbtitn", env->id, env->name, env->image, env->root, env->driver,
		    (int)env->volatile_, (int)env->want_on, env->boot_id, created,
		    env->driver_note, env->layers_of);
	if (r >= 0 && env->layers_of[0])
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO env_layers (env, pos, layer)"
			    " SELECT ?1, pos, layer FROM env_layers WHERE env = ?2",
			    "tt", env->id, env->layers_of);
	else if (r >= 0)
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO env_layers (env, pos, layer)"
			    " SELECT ?1, pos, layer FROM image_layers WHERE image = ?2",
			    "tt", env->id, env->image);
	return r < 0 ? r : 0;
}

int catalog_env_add(struct catalog *c, const struct catalog_env *env, struct ct_err *e)
{
	int r;

	r = str_fits("env id", env->id, sizeof(env->id), e);
	if (r == 0)
		r = str_fits("env name", env->name, sizeof(env->name), e);
	if (r == 0)
		r = str_fits("image name", env->image, sizeof(env->image), e);
	if (r == 0)
		r = str_fits("env root", env->root, sizeof(env->root), e);
	if (r == 0)
		r = str_fits("driver", env->driver, sizeof(env->driver), e);
	if (r == 0)
		r = str_fits("boot id", env->boot_id, sizeof(env->boot_id), e);
	if (r < 0)
		return r;
	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = env_add_locked(c, env, e);
	return tx_end(c, r, e);
}

int catalog_env_get(struct catalog *c, const char *name, struct catalog_env *ret, struct ct_err *e)
{
	return env_load_one(c, ENV_SELECT " WHERE name = ?1", name, ret, "named", e);
}

int catalog_env_by_root(struct catalog *c, const char *root, struct catalog_env *ret,
			struct ct_err *e)
{
	return env_load_one(c, ENV_SELECT " WHERE root = ?1", root, ret, "with root", e);
}

/* The envs are read before the first call, so cb may change the catalog
 * (remove envs, say) without upsetting the walk. */
int catalog_env_foreach(struct catalog *c, int (*cb)(const struct catalog_env *env, void *data),
			void *data, struct ct_err *e)
{
	_cleanup_free_ struct catalog_env *v = NULL;
	size_t n, i;
	int r;

	r = envs_load(c, ENV_SELECT " ORDER BY name", NULL, &v, &n, e);
	if (r < 0)
		return r;
	for (i = 0; r == 0 && i < n; i++)
		r = cb(&v[i], data);
	return r;
}

/* boot_id may be NULL, stored as "". */
int catalog_env_set_on(struct catalog *c, const char *name, bool want_on, const char *boot_id,
		       struct ct_err *e)
{
	int r;

	if (!boot_id)
		boot_id = "";
	r = str_fits("boot id", boot_id, sizeof(((struct catalog_env *)NULL)->boot_id), e);
	if (r < 0)
		return r;
	r = sql_write(c, SQL_WRITE, e, "UPDATE envs SET want_on = ?1, boot_id = ?2 WHERE name = ?3",
		      "btt", (int)want_on, boot_id, name);
	if (r == 0)
		return ct_fail(e, ENOENT, "no env named '%s'", name);
	return r < 0 ? r : 0;
}

int catalog_env_set_driver(struct catalog *c, const char *name, const char *driver,
			   const char *note, struct ct_err *e)
{
	int r;

	if (!note)
		note = "";
	r = str_fits("driver", driver, sizeof(((struct catalog_env *)NULL)->driver), e);
	if (r == 0)
		r = str_fits("driver note", note, sizeof(((struct catalog_env *)NULL)->driver_note), e);
	if (r < 0)
		return r;
	r = sql_write(c, SQL_WRITE, e, "UPDATE envs SET driver = ?1, driver_note = ?2 WHERE name = ?3",
		      "ttt", driver, note, name);
	if (r == 0)
		return ct_fail(e, ENOENT, "no env named '%s'", name);
	return r < 0 ? r : 0;
}

int catalog_env_remove(struct catalog *c, const char *name, struct ct_err *e)
{
	int r;

	r = sql_write(c, SQL_DELETE, e, "DELETE FROM envs WHERE name = ?1", "t", name);
	if (r == 0)
		return ct_fail(e, ENOENT, "no env named '%s'", name);
	return r < 0 ? r : 0;
}

int catalog_env_layers(struct catalog *c, const char *id, char (**ret)[37], size_t *ret_n,
		       struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	struct catalog_image img = { 0 };
	int r;

	r = sql_prepare(c, &s, e, "SELECT layer FROM env_layers WHERE env = ?1 ORDER BY pos", "t",
			id);
	if (r < 0)
		return r;
	while ((r = sql_step(c, s, SQL_READ, e)) > 0) {
		r = image_push_layer(c, s, 0, &img, e);
		if (r < 0)
			break;
	}
	if (r < 0) {
		catalog_image_clear(&img);
		return r;
	}
	*ret = img.layers;
	*ret_n = img.n_layers;
	return 0;
}

int catalog_env_config(struct catalog *c, const char *id, char **ret, struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	int r;

	r = sql_prepare(c, &s, e, "SELECT config FROM envs WHERE id = ?1", "t", id);
	if (r < 0)
		return r;
	r = sql_step(c, s, SQL_READ, e);
	if (r < 0)
		return r;
	if (r == 0)
		return ct_fail(e, ENOENT, "no env with id '%s'", id);
	*ret = strdup(sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
	return *ret ? 0 : ct_fail(e, ENOMEM, "out of memory");
}

static int env_rebase_locked(struct catalog *c, const char *name, const char *image,
			     struct ct_err *e)
{
	int r;

	if (image) {
		r = sql_run(c, SQL_WRITE, e, "UPDATE envs SET image = ?1 WHERE name = ?2", "tt",
			    image, name);
		if (r == 0)
			return ct_fail(e, ENOENT, "no env named '%s'", name);
		if (r < 0)
			return r;
	}
	r = sql_run(c, SQL_DELETE, e,
		    "DELETE FROM env_layers WHERE env = (SELECT id FROM envs WHERE name = ?1)", "t",
		    name);
	if (r >= 0)
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO env_layers (env, pos, layer)"
			    " SELECT e.id, l.pos, l.layer FROM envs AS e"
			    " JOIN image_layers AS l ON l.image = e.image WHERE e.name = ?1",
			    "t", name);
	if (r >= 0)
		r = sql_run(c, SQL_WRITE, e,
			    "UPDATE envs SET config = (SELECT config FROM images WHERE name = envs.image)"
			    " WHERE name = ?1",
			    "t", name);
	return r < 0 ? r : 0;
}

int catalog_env_set_layers(struct catalog *c, const char *name, char (*layers)[37], size_t n,
			   struct ct_err *e)
{
	int64_t id_ok;
	size_t i;
	int r;

	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = sql_int(c, &id_ok, e, "SELECT count(*) FROM envs WHERE name = ?1", "t", name);
	if (r == 0 && !id_ok)
		r = ct_fail(e, ENOENT, "no env named '%s'", name);
	if (r == 0)
		r = sql_run(c, SQL_DELETE, e,
			    "DELETE FROM env_layers WHERE env = (SELECT id FROM envs WHERE name = ?1)",
			    "t", name);
	for (i = 0; r >= 0 && i < n; i++)
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO env_layers (env, pos, layer)"
			    " SELECT id, ?2, ?3 FROM envs WHERE name = ?1",
			    "tit", name, (int64_t)i, layers[i]);
	return tx_end(c, r < 0 ? r : 0, e);
}

int catalog_env_rebase(struct catalog *c, const char *name, const char *image, struct ct_err *e)
{
	int r;

	r = tx_begin(c, e);
	if (r < 0)
		return r;
	r = env_rebase_locked(c, name, image, e);
	return tx_end(c, r, e);
}

int catalog_commit(struct catalog *c, const struct catalog_layer *l, const struct catalog_image *img,
		   const char *env_name, struct ct_err *e)
{
	int r;

	r = layer_fits(l, e);
	if (r == 0 && img)
		r = image_fits(img, e);
	if (r < 0)
		return r;
	/* the caller renames a folder into layers/ once this returns: the
	 * row must outlive a power loss, or gc would take the folder */
	(void)sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	r = tx_begin(c, e);
	if (r < 0)
		goto out;
	r = layer_add_locked(c, l, e);
	if (r == 0 && img)
		r = image_add_locked(c, img, true, e);
	if (r == 0 && env_name && img)
		r = env_rebase_locked(c, env_name, img->name, e);
	else if (r == 0 && env_name)
		r = sql_run(c, SQL_WRITE, e,
			    "INSERT INTO env_layers (env, pos, layer) SELECT id,"
			    " (SELECT coalesce(max(pos), -1) + 1 FROM env_layers WHERE env = envs.id), ?2"
			    " FROM envs WHERE name = ?1",
			    "tt", env_name, l->id);
	r = tx_end(c, r < 0 ? r : 0, e);
out:
	(void)sqlite3_exec(c->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
	return r;
}

/* Binds */

/* A bind replacing one to the same target keeps its place in the order,
 * so that binds nested inside it are still mounted after it. */
int catalog_bind_add(struct catalog *c, const char *env_id, const struct catalog_bind *b,
		     struct ct_err *e)
{
	int r;

	r = str_fits("bind source", b->src, sizeof(b->src), e);
	if (r == 0)
		r = str_fits("bind target", b->tgt, sizeof(b->tgt), e);
	if (r < 0)
		return r;
	r = sql_write(c, SQL_WRITE, e,
		      "INSERT INTO binds (env, pos, src, tgt, ro) VALUES (?1,"
		      " (SELECT coalesce(max(pos), 0) + 1 FROM binds WHERE env = ?1), ?2, ?3, ?4)"
		      " ON CONFLICT (env, tgt) DO UPDATE SET src = excluded.src, ro = excluded.ro",
		      "tttb", env_id, b->src, b->tgt, (int)b->ro);
	if (r == -ENOENT)
		return ct_fail(e, ENOENT, "no env with id '%s'", env_id);
	return r < 0 ? r : 0;
}

int catalog_bind_list(struct catalog *c, const char *env_id, struct catalog_bind **ret,
		      size_t *ret_n, struct ct_err *e)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	_cleanup_free_ struct catalog_bind *v = NULL;
	struct catalog_bind *p;
	size_t n = 0, cap = 0;
	int r;

	r = sql_prepare(c, &s, e, "SELECT src, tgt, ro FROM binds WHERE env = ?1 ORDER BY pos",
			"t", env_id);
	if (r < 0)
		return r;
	while ((r = sql_step(c, s, SQL_READ, e)) > 0) {
		p = array_grow(v, &cap, n, sizeof(*v));
		if (!p)
			return ct_fail(e, ENOMEM, "out of memory");
		v = p;
		r = col_text(c, s, 0, v[n].src, sizeof(v[n].src), e);
		if (r == 0)
			r = col_text(c, s, 1, v[n].tgt, sizeof(v[n].tgt), e);
		if (r < 0)
			return r;
		v[n++].ro = sqlite3_column_int(s, 2) != 0;
	}
	if (r < 0)
		return r;
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}
