/* ctrfs._native: the hot loops of `ctrfs export` and `ctrfs cp` in C.
 *
 * tar_tree(dirfd, hooks, arcprefix, levels) walks the directory open as `dirfd` depth-first in
 * getdents order (the order of the pure-Python walk in ctrfs.rootfs.fd, so both write the same
 * archive byte for byte) and appends tar members to `hooks.buf` (a bytearray).
 * copy_tree(srcfd, dstfd, hooks, levels, as_root, covered) walks it the same way and copies each
 * entry into the directory open as `dstfd`, as ctrfs.ops.copy._Copier.add would.
 * Both are used only on a Root whose mount cannot open devices and has no submounts (a private
 * nodev clone of the container's root mount: ctrfs.views), where a direct openat(O_RDONLY|
 * O_NOFOLLOW|O_NONBLOCK|O_NOCTTY) of a listed name cannot open a device, block on a FIFO or
 * follow a symlink, and fstat on the opened fd then says what was opened.
 *
 * Policy stays in Python. This code does the common entries itself: regular files of one link
 * (tar: at most SMALL_FILE bytes; cp: any size, not sparse), directories and symlinks (tar: whose
 * names, owners and times fit the ustar fields and which carry no extended attributes).
 * Everything else (hard links, sparse files, devices, FIFOs, sockets, long or non-ASCII names,
 * xattrs, the mount points of the mounts a copy follows, any error) goes to hooks.member(), which
 * does it with the reference code (TarWriter.add, _Copier.add). Warnings go to hooks.warn(),
 * owner names come from hooks.owner(), liveness and progress from hooks.tick() every TICK
 * entries, and a directory deeper than `levels` is walked by hooks.deep(), so this code holds at
 * most `levels` directory fds (two per level for a copy) however deep the tree.
 *
 * It also has the three system calls every path resolution makes (openat2, statx's mount ID,
 * fstatfs's type; ctrfs.rootfs._calls), so that a command's start needs no ctypes.
 *
 * docs/security.md: nothing here resolves a path but openat2 as its caller asks; every open is one component relative to a
 * directory fd this walk opened and checked (fstat after open), never following a symlink; every
 * name created is one component relative to a directory this copy made, with O_EXCL.
 */
#define _GNU_SOURCE  /* copy_file_range */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/sendfile.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#define BLOCK 512
#define SMALL_FILE (1 << 16)      /* as ctrfs.ops.archive.SMALL_FILE */
#define OUT_BUFFER (1 << 20)      /* as ctrfs.ops.archive.OUT_BUFFER */
#define DENTS_BUF (32 * 1024)
#define TICK 512                  /* entries between hooks.tick() calls */
#define MAX_LEVELS 256
#define MAX_OCTAL_8 (8LL * 8 * 8 * 8 * 8 * 8 * 8)
#define MAX_OCTAL_12 (MAX_OCTAL_8 * 8 * 8 * 8 * 8)
#define SENDFILE_MAX 0x7FFFF000L  /* as ctrfs.ops.archive.SENDFILE_MAX */

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

typedef struct {
    int fd;
    dev_t dev;
    ino_t ino;
    size_t rel_len;   /* length of this directory's path relative to the start ("" for it) */
    char *dents;
    long pos, end;
    int eof;
    int dfd;          /* copy_tree: this directory's copy, its owner, mode and times set */
    struct stat st;   /* when the walk leaves it (from this stat) */
} Level;

typedef struct {
    dev_t dev;
    ino_t ino;
} Ident;

typedef struct {
    PyObject *hooks;
    PyObject *owners;  /* (uid << 32 | gid) -> (uid, gid, uname, gname, fits) from hooks.owner */
    Level *lv;
    int depth;         /* index of the deepest open level */
    int max_levels;
    char *rel;         /* path of the current entry relative to the start, '/'-joined */
    size_t rel_cap;
    const char *arcpre;  /* bytes put before every member name ("" or "PREFIX/") */
    size_t arcpre_len;
    long long n_entries, n_bytes, seen;
    char *data;        /* SMALL_FILE + 1 bytes: a small file's content */
    int copy;          /* 1: copy_tree (the level's dfd is the copy), 0: tar_tree */
    int as_root;       /* copy_tree: owners are restored (euid 0) */
    int kcopy;         /* copy_tree: 0 copy_file_range, 1 sendfile, 2 pread/pwrite */
    Ident *covered;    /* copy_tree: inodes a followed mount covers (hooks.member decides) */
    Py_ssize_t n_covered;
} Walk;

static PyObject *s_buf, *s_flush, *s_warn;

/* -- output ---------------------------------------------------------------------------------- */

/* Room for n more bytes at the end of hooks.buf: a pointer to them, or NULL with an exception. */
static char *out_reserve(Walk *w, Py_ssize_t n) {
    PyObject *buf = PyObject_GetAttr(w->hooks, s_buf);
    if (buf == NULL)
        return NULL;
    if (!PyByteArray_Check(buf)) {
        Py_DECREF(buf);
        PyErr_SetString(PyExc_TypeError, "hooks.buf must be a bytearray");
        return NULL;
    }
    Py_ssize_t old = PyByteArray_GET_SIZE(buf);
    if (PyByteArray_Resize(buf, old + n) < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    char *p = PyByteArray_AS_STRING(buf) + old;
    Py_DECREF(buf);  /* hooks keeps it alive */
    return p;
}

static int out_maybe_flush(Walk *w) {
    PyObject *buf = PyObject_GetAttr(w->hooks, s_buf);
    if (buf == NULL)
        return -1;
    Py_ssize_t n = PyByteArray_Check(buf) ? PyByteArray_GET_SIZE(buf) : 0;
    Py_DECREF(buf);
    if (n < OUT_BUFFER)
        return 0;
    PyObject *r = PyObject_CallMethodNoArgs(w->hooks, s_flush);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* -- the ustar header, byte for byte as ctrfs.ops.archive._ustar writes it ------------------- */

static void octal(char *field, int width, unsigned long long v) {
    /* width-1 octal digits, zero-padded, then NUL (Python's b"%07o\0" for width 8) */
    field[width - 1] = '\0';
    for (int i = width - 2; i >= 0; i--) {
        field[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static void ustar(char *h, const char *name, size_t name_len, const char *name_tail,
                  size_t tail_len, unsigned mode, long long uid, long long gid, long long size,
                  long long mtime, char typeflag, const char *link, size_t link_len,
                  const char *uname, size_t uname_len, const char *gname, size_t gname_len) {
    memset(h, 0, BLOCK);
    memcpy(h, name, name_len);
    memcpy(h + name_len, name_tail, tail_len);
    octal(h + 100, 8, mode);
    octal(h + 108, 8, (unsigned long long)uid);
    octal(h + 116, 8, (unsigned long long)gid);
    octal(h + 124, 12, (unsigned long long)size);
    octal(h + 136, 12, (unsigned long long)mtime);
    memset(h + 148, ' ', 8);
    h[156] = typeflag;
    memcpy(h + 157, link, link_len);
    memcpy(h + 257, "ustar\0" "00", 8);
    memcpy(h + 265, uname, uname_len);
    memcpy(h + 297, gname, gname_len);
    unsigned sum = 0;
    for (int i = 0; i < BLOCK; i++)
        sum += (unsigned char)h[i];
    /* b"%06o\0 " */
    octal(h + 148, 7, sum);
    h[155] = ' ';
}

/* -- Python callbacks -------------------------------------------------------------------------- */

static PyObject *rel_bytes(Walk *w, size_t len) {
    return PyBytes_FromStringAndSize(w->rel, (Py_ssize_t)len);
}

static int warn(Walk *w, size_t rel_len, const char *message) {
    PyObject *rel = rel_bytes(w, rel_len);
    if (rel == NULL)
        return -1;
    PyObject *msg = PyUnicode_FromString(message);
    if (msg == NULL) {
        Py_DECREF(rel);
        return -1;
    }
    PyObject *r = PyObject_CallMethodObjArgs(w->hooks, s_warn, rel, msg, NULL);
    Py_DECREF(rel);
    Py_DECREF(msg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *stat_tuple(const struct stat *st) {
    /* os.stat_result's 19 fields, as CPython's posixmodule fills them */
    double at = (double)st->st_atim.tv_sec + (double)st->st_atim.tv_nsec * 1e-9;
    double mt = (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec * 1e-9;
    double ct = (double)st->st_ctim.tv_sec + (double)st->st_ctim.tv_nsec * 1e-9;
    long long bil = 1000000000LL;
    return Py_BuildValue(
        "(IKKkIIL LLL ddd LLL lLK)", (unsigned)st->st_mode, (unsigned long long)st->st_ino,
        (unsigned long long)st->st_dev, (unsigned long)st->st_nlink, (unsigned)st->st_uid,
        (unsigned)st->st_gid, (long long)st->st_size, (long long)st->st_atim.tv_sec,
        (long long)st->st_mtim.tv_sec, (long long)st->st_ctim.tv_sec, at, mt, ct,
        (long long)st->st_atim.tv_sec * bil + st->st_atim.tv_nsec,
        (long long)st->st_mtim.tv_sec * bil + st->st_mtim.tv_nsec,
        (long long)st->st_ctim.tv_sec * bil + st->st_ctim.tv_nsec, (long)st->st_blksize,
        (long long)st->st_blocks, (unsigned long long)st->st_rdev);
}

/* The reference code writes this member: hooks.member(dirfd, name, stat, depth, rel). */
static int member(Walk *w, int dirfd, const char *name, const struct stat *st, int depth,
                  size_t rel_len) {
    PyObject *t = stat_tuple(st);
    PyObject *nm = PyBytes_FromString(name);
    PyObject *rel = rel_bytes(w, rel_len);
    PyObject *r = NULL;
    if (t != NULL && nm != NULL && rel != NULL)
        r = PyObject_CallMethod(w->hooks, "member", "iOOiO", dirfd, nm, t, depth, rel);
    Py_XDECREF(t);
    Py_XDECREF(nm);
    Py_XDECREF(rel);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return out_maybe_flush(w);
}

static int tick(Walk *w) {
    PyObject *r = PyObject_CallMethod(w->hooks, "tick", "LL", w->n_entries, w->n_bytes);
    w->n_entries = w->n_bytes = 0;
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return PyErr_CheckSignals();
}

/* (uid, gid, uname, gname, fits) for raw ids, through a cache; a new reference or NULL. */
static PyObject *owner(Walk *w, uid_t uid, gid_t gid) {
    PyObject *key = PyLong_FromUnsignedLongLong(((unsigned long long)uid << 32) | gid);
    if (key == NULL)
        return NULL;
    PyObject *o = PyDict_GetItemWithError(w->owners, key);
    if (o != NULL) {
        Py_DECREF(key);
        Py_INCREF(o);
        return o;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    o = PyObject_CallMethod(w->hooks, "owner", "kk", (unsigned long)uid, (unsigned long)gid);
    if (o == NULL || !PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 5 ||
        PyDict_SetItem(w->owners, key, o) < 0) {
        if (o != NULL && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "hooks.owner must return a 5-tuple");
        Py_XDECREF(o);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(key);
    return o;
}

/* -- members written here ---------------------------------------------------------------------- */

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 0;
    return 1;
}

/* int(st.st_mtime) as the reference computes it (from the float CPython builds) */
static long long py_mtime(const struct stat *st) {
    return (long long)((double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec * 1e-9);
}

/* Whether a member of this entry fits a plain ustar header (else the reference writes it with
 * pax records); on success *o holds the owner tuple (a new reference). -1: an exception. */
static int fits(Walk *w, const struct stat *st, size_t name_len, size_t rel_len,
                const char *link, size_t link_len, PyObject **o) {
    *o = NULL;
    if (name_len > 100 || !is_ascii(w->rel, rel_len) || !is_ascii(w->arcpre, w->arcpre_len) ||
        link_len > 100 ||
        (link_len && !is_ascii(link, link_len)))
        return 0;
    long long mtime = py_mtime(st);
    if (mtime < 0 || mtime >= MAX_OCTAL_12 || st->st_size >= MAX_OCTAL_12)
        return 0;
    PyObject *own = owner(w, st->st_uid, st->st_gid);
    if (own == NULL)
        return -1;
    if (!PyObject_IsTrue(PyTuple_GET_ITEM(own, 4))) {
        Py_DECREF(own);
        return 0;
    }
    *o = own;
    return 1;
}

/* Header of the current entry (name: arcpre + rel [+ "/"]) appended to the output, with
 * `extra` more bytes reserved after it: a pointer to those, or NULL with an exception. */
static char *put_header(Walk *w, PyObject *own, const struct stat *st, size_t rel_len,
                        int slash, char typeflag, long long size, const char *link,
                        size_t link_len, Py_ssize_t extra) {
    PyObject *un = PyTuple_GET_ITEM(own, 2), *gn = PyTuple_GET_ITEM(own, 3);
    if (!PyBytes_Check(un) || !PyBytes_Check(gn)) {
        PyErr_SetString(PyExc_TypeError, "owner names must be bytes");
        return NULL;
    }
    long long uid = PyLong_AsLongLong(PyTuple_GET_ITEM(own, 0));
    long long gid = PyLong_AsLongLong(PyTuple_GET_ITEM(own, 1));
    if (PyErr_Occurred())
        return NULL;
    char *h = out_reserve(w, BLOCK + extra);
    if (h == NULL)
        return NULL;
    /* name = arcpre + rel [+ "/"]: arcpre first, then rel, then the slash */
    char name[101];
    size_t n = 0;
    memcpy(name, w->arcpre, w->arcpre_len);
    n = w->arcpre_len;
    memcpy(name + n, w->rel, rel_len);
    n += rel_len;
    ustar(h, name, n, "/", slash ? 1 : 0, st->st_mode & 07777, uid, gid, size, py_mtime(st),
          typeflag, link, link_len, PyBytes_AS_STRING(un), (size_t)PyBytes_GET_SIZE(un),
          PyBytes_AS_STRING(gn), (size_t)PyBytes_GET_SIZE(gn));
    return h + BLOCK;
}

static int has_xattrs_fd(int fd) {
    ssize_t n = flistxattr(fd, NULL, 0);
    return n > 0;  /* an error reads as none, as in the reference */
}

static int has_xattrs_at(int dirfd, const char *name) {
    char path[64 + NAME_MAX];
    snprintf(path, sizeof path, "/proc/self/fd/%d/%s", dirfd, name);
    ssize_t n = llistxattr(path, NULL, 0);
    return n != 0;  /* an error: let the reference look (it reports what is wrong) */
}

static int push_rel(Walk *w, size_t at, const char *name, size_t *out_len) {
    size_t nl = strlen(name);
    size_t need = at + 1 + nl + 1;
    if (need > w->rel_cap) {
        size_t cap = w->rel_cap * 2 > need ? w->rel_cap * 2 : need;
        char *p = PyMem_Realloc(w->rel, cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->rel = p;
        w->rel_cap = cap;
    }
    size_t n = at;
    if (at > 0)
        w->rel[n++] = '/';
    memcpy(w->rel + n, name, nl);
    n += nl;
    w->rel[n] = '\0';
    *out_len = n;
    return 0;
}

static int errno_oserror(const char *what) {
    (void)what;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* fstatat of a listed name; 0, 1 if it vanished (warned), -1 on error */
static int lstat_at(Walk *w, int dirfd, const char *name, struct stat *st, size_t rel_len) {
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW);
    Py_END_ALLOW_THREADS
    if (r == 0)
        return 0;
    if (errno == ENOENT)
        return warn(w, rel_len, "vanished during the walk; skipped") < 0 ? -1 : 1;
    return errno_oserror(name);
}

/* -- opening what a listing names (both walks) --------------------------------------------- */

/* A listed name opened with `flags` (one component, never following a symlink) and fstat'ed:
 * the fd, or -1 with errno. */
static int open_listed(int dirfd, const char *name, int flags, struct stat *st) {
    int fd;
    Py_BEGIN_ALLOW_THREADS
    fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, st) < 0) {
        int e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    Py_END_ALLOW_THREADS
    return fd;
}

#define OPEN_FILE (O_RDONLY | O_NONBLOCK | O_NOCTTY)
#define OPEN_DIR (O_RDONLY | O_DIRECTORY)

/* A directory that could not be opened (err) after its entry was written or copied as what it
 * is now (a directory): the Python walk's warning, or an OSError. */
static int dir_not_entered(Walk *w, const char *name, int err, size_t rel_len) {
    if (err == ENOENT || err == ENOTDIR || err == ELOOP)
        return warn(w, rel_len, "vanished or replaced during the walk; skipped");
    if (err == EACCES || err == EPERM)
        return warn(w, rel_len, "permission denied; not entered");
    errno = err;
    return errno_oserror(name);
}

/* The walk goes down into the open directory cfd (and its copy dfd, or -1): -1 (both closed)
 * when out of memory. */
static int push_level(Walk *w, int cfd, int dfd, const struct stat *st, size_t rel_len) {
    Level *L = &w->lv[w->depth + 1];
    if (L->dents == NULL) {
        L->dents = PyMem_Malloc(DENTS_BUF);
        if (L->dents == NULL) {
            close(cfd);
            if (dfd >= 0)
                close(dfd);
            PyErr_NoMemory();
            return -1;
        }
    }
    L->fd = cfd;
    L->dfd = dfd;
    L->st = *st;
    L->dev = st->st_dev;
    L->ino = st->st_ino;
    L->rel_len = rel_len;
    L->pos = L->end = 0;
    L->eof = 0;
    w->depth++;
    return 0;
}

/* A regular file listed as such. */
static int do_file(Walk *w, int dirfd, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int fd = open_listed(dirfd, name, OPEN_FILE, &st);
    if (fd < 0) {
        /* replaced by something else, vanished, refused: the reference decides */
        int r = lstat_at(w, dirfd, name, &st, rel_len);
        return r != 0 ? (r < 0 ? -1 : 0) : member(w, dirfd, name, &st, depth, rel_len);
    }
    size_t name_len = w->arcpre_len + rel_len;
    int simple = S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_size <= SMALL_FILE &&
                 !(st.st_size && (long long)st.st_blocks * 512 < st.st_size);
    PyObject *own = NULL;
    if (simple) {
        int f = fits(w, &st, name_len, rel_len, "", 0, &own);
        if (f < 0) {
            close(fd);
            return -1;
        }
        simple = f;
    }
    ssize_t got = 0;
    int xattrs = 0;
    if (simple) {
        /* As the reference: one pread of a byte more than the size listed (a regular file
         * reads short only at its end, so a full answer means it grew), more only if short. */
        size_t want = (size_t)st.st_size + 1;
        Py_BEGIN_ALLOW_THREADS
        xattrs = has_xattrs_fd(fd);
        while (!xattrs && got < st.st_size) {
            ssize_t k = pread(fd, w->data + got, want - (size_t)got, got);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                got = -1;
                break;
            }
            if (k == 0)
                break;
            got += k;
        }
        close(fd);
        Py_END_ALLOW_THREADS
    } else {
        close(fd);
    }
    if (!simple || xattrs || got < 0) {
        Py_XDECREF(own);
        return member(w, dirfd, name, &st, depth, rel_len);
    }
    long long size = st.st_size;
    Py_ssize_t pad = (Py_ssize_t)((BLOCK - size % BLOCK) % BLOCK);
    char *p = put_header(w, own, &st, rel_len, 0, '0', size, "", 0, (Py_ssize_t)size + pad);
    Py_DECREF(own);
    if (p == NULL)
        return -1;
    long long have = got > size ? size : got;
    memcpy(p, w->data, (size_t)have);
    memset(p + have, 0, (size_t)(size - have + pad));
    w->n_entries++;
    w->n_bytes += size;
    if (got > size) {
        if (warn(w, rel_len, "grew while read; truncated to the size in its header") < 0)
            return -1;
    } else if (got < size) {
        char msg[128];
        snprintf(msg, sizeof msg,
                 "shrank by %lld bytes while read; zero-padded to the size in its header",
                 size - (long long)got);
        if (warn(w, rel_len, msg) < 0)
            return -1;
    }
    return out_maybe_flush(w);
}

static int do_symlink(Walk *w, int dirfd, const char *name, int depth, size_t rel_len,
                      struct stat *st) {
    char link[101];
    ssize_t n;
    int xattrs = 0;
    Py_BEGIN_ALLOW_THREADS
    n = readlinkat(dirfd, name, link, sizeof link);
    if (n >= 0 && n <= 100)
        xattrs = has_xattrs_at(dirfd, name);
    Py_END_ALLOW_THREADS
    if (n < 0 || n > 100 || xattrs)
        return member(w, dirfd, name, st, depth, rel_len);
    PyObject *own = NULL;
    int f = fits(w, st, w->arcpre_len + rel_len, rel_len, link, (size_t)n, &own);
    if (f <= 0)
        return f < 0 ? -1 : member(w, dirfd, name, st, depth, rel_len);
    char *p = put_header(w, own, st, rel_len, 0, '2', 0, link, (size_t)n, 0);
    Py_DECREF(own);
    if (p == NULL)
        return -1;
    w->n_entries++;
    return out_maybe_flush(w);
}

static int call_deep(Walk *w, size_t rel_len, const struct stat *st, int depth) {
    PyObject *rel = rel_bytes(w, rel_len);
    if (rel == NULL)
        return -1;
    PyObject *r = PyObject_CallMethod(w->hooks, "deep", "OKKi", rel,
                                      (unsigned long long)st->st_dev,
                                      (unsigned long long)st->st_ino, depth);
    Py_DECREF(rel);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return out_maybe_flush(w);
}

/* A directory listed as such: its member, then the walk goes down into it. */
static int do_dir(Walk *w, int dirfd, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int cfd = open_listed(dirfd, name, OPEN_DIR, &st);
    if (cfd < 0) {
        int err = errno;
        int r = lstat_at(w, dirfd, name, &st, rel_len);
        if (r != 0)
            return r < 0 ? -1 : 0;
        if (member(w, dirfd, name, &st, depth, rel_len) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode))
            return 0;  /* replaced by a file since the listing: written as what it is now */
        return dir_not_entered(w, name, err, rel_len);
    }
    /* its member */
    PyObject *own = NULL;
    int f = 0;
    int xattrs;
    Py_BEGIN_ALLOW_THREADS
    xattrs = has_xattrs_fd(cfd);
    Py_END_ALLOW_THREADS
    if (!xattrs) {
        f = fits(w, &st, w->arcpre_len + rel_len + 1, rel_len, "", 0, &own);
        if (f < 0) {
            close(cfd);
            return -1;
        }
    }
    if (f) {
        char *p = put_header(w, own, &st, rel_len, 1, '5', 0, "", 0, 0);
        Py_DECREF(own);
        if (p == NULL) {
            close(cfd);
            return -1;
        }
        w->n_entries++;
        if (out_maybe_flush(w) < 0) {
            close(cfd);
            return -1;
        }
    } else if (member(w, dirfd, name, &st, depth, rel_len) < 0) {
        close(cfd);
        return -1;
    }
    /* then down into it */
    for (int i = 0; i <= w->depth; i++) {
        if (w->lv[i].dev == st.st_dev && w->lv[i].ino == st.st_ino) {
            close(cfd);
            return warn(w, rel_len, "directory loop (a bind mount of an ancestor); not entered");
        }
    }
    if (w->depth + 1 >= w->max_levels) {
        close(cfd);
        return call_deep(w, rel_len, &st, depth);
    }
    return push_level(w, cfd, -1, &st, rel_len);
}

static int do_other(Walk *w, int dirfd, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int r = lstat_at(w, dirfd, name, &st, rel_len);
    if (r != 0)
        return r < 0 ? -1 : 0;
    if (S_ISDIR(st.st_mode))
        return do_dir(w, dirfd, name, depth, rel_len);
    if (S_ISREG(st.st_mode))
        return do_file(w, dirfd, name, depth, rel_len);
    if (S_ISLNK(st.st_mode))
        return do_symlink(w, dirfd, name, depth, rel_len, &st);
    return member(w, dirfd, name, &st, depth, rel_len);
}

/* Next entry of the deepest level: 1 and *d set, 0 at its end (warned if getdents failed). */
static int next_dent(Walk *w, Level *L, struct linux_dirent64 **d) {
    for (;;) {
        if (L->pos < L->end) {
            *d = (struct linux_dirent64 *)(L->dents + L->pos);
            L->pos += (*d)->d_reclen;
            const char *n = (*d)->d_name;
            if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
                continue;
            return 1;
        }
        if (L->eof)
            return 0;
        long n;
        Py_BEGIN_ALLOW_THREADS
        n = syscall(SYS_getdents64, L->fd, L->dents, DENTS_BUF);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EMFILE || errno == ENFILE)
                return errno_oserror("getdents64");
            char msg[160];
            snprintf(msg, sizeof msg, "cannot be read (%s); rest skipped", strerror(errno));
            L->eof = 1;
            return warn(w, L->rel_len, msg) < 0 ? -1 : 0;
        }
        L->pos = 0;
        L->end = n;
        if (n == 0)
            L->eof = 1;
    }
}

/* -- copy_tree: the hot loop of `ctrfs cp` --------------------------------------------------- */

/* An OSError for an operation on the copy (the host side): as os.open() and friends raise it. */
static int dst_error(const char *name) {
    PyObject *fn = PyUnicode_DecodeFSDefault(name);
    if (fn == NULL)
        return -1;
    PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, fn);
    Py_DECREF(fn);
    return -1;
}

static int is_covered(Walk *w, const struct stat *st) {
    for (Py_ssize_t i = 0; i < w->n_covered; i++)
        if (w->covered[i].dev == st->st_dev && w->covered[i].ino == st->st_ino)
            return 1;
    return 0;
}

/* The reference code copies this entry: hooks.member(srcdirfd, dstdirfd, name, stat, depth,
 * rel, covered); with `covered` the whole tree the container's view shows at its path. */
static int cp_member(Walk *w, int sdir, int ddir, const char *name, const struct stat *st,
                     int depth, size_t rel_len, int covered) {
    PyObject *t = stat_tuple(st);
    PyObject *nm = PyBytes_FromString(name);
    PyObject *rel = rel_bytes(w, rel_len);
    PyObject *r = NULL;
    if (t != NULL && nm != NULL && rel != NULL)
        r = PyObject_CallMethod(w->hooks, "member", "iiOOiOi", sdir, ddir, nm, t, depth, rel,
                                covered);
    Py_XDECREF(t);
    Py_XDECREF(nm);
    Py_XDECREF(rel);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Owner (as root), mode without setuid/setgid, then times (last: the others change ctime
 * only) of the open copy `fd`, from the source's stat: the reference's order. */
static int set_meta_fd(Walk *w, int fd, const struct stat *st, const char *name) {
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    int r = 0;
    Py_BEGIN_ALLOW_THREADS
    if (w->as_root && fchown(fd, st->st_uid, st->st_gid) < 0)
        r = -1;
    if (r == 0 && fchmod(fd, st->st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID)) < 0)
        r = -1;
    if (r == 0 && futimens(fd, ts) < 0)
        r = -1;
    Py_END_ALLOW_THREADS
    return r < 0 ? dst_error(name) : 0;
}

static int write_all(int fd, const char *p, size_t n, off_t off) {
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
        off += k;
    }
    return 0;
}

static int no_kernel_copy(int e) {
    return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == EBADF;
}

/* [0, size) of src into dst at the same offsets, in the kernel where it can (copy_file_range,
 * else sendfile: the reference's order, remembered for the rest of the copy); the bytes copied
 * (fewer if src ends first), or -1 with errno (*src_side says which file failed). */
static long long copy_range(Walk *w, int src, int dst, long long size, int *src_side) {
    long long got = 0;
    *src_side = 0;
    while (got < size) {
        long long want = size - got;
        ssize_t k;
        if (w->kcopy == 0) {
            loff_t in = got, out = got;
            k = copy_file_range(src, &in, dst, &out, (size_t)want, 0);
        } else if (w->kcopy == 1) {
            if (lseek(dst, (off_t)got, SEEK_SET) < 0)
                return -1;
            off_t off = (off_t)got;
            k = sendfile(dst, src, &off, (size_t)(want > SENDFILE_MAX ? SENDFILE_MAX : want));
        } else {
            k = pread(src, w->data, (size_t)(want > SMALL_FILE ? SMALL_FILE : want), (off_t)got);
            if (k < 0 && errno != EINTR) {
                *src_side = 1;
                return -1;
            }
            if (k > 0 && write_all(dst, w->data, (size_t)k, (off_t)got) < 0)
                return -1;
        }
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (w->kcopy < 2 && no_kernel_copy(errno)) {
                w->kcopy++;
                continue;
            }
            return -1;
        }
        if (k == 0)
            break;
        got += k;
    }
    return got;
}

/* A regular file listed as such: copied here unless it is one the reference must handle. */
static int cp_file(Walk *w, int sdir, int ddir, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int fd = open_listed(sdir, name, OPEN_FILE, &st);
    if (fd < 0) {
        int r = lstat_at(w, sdir, name, &st, rel_len);
        return r != 0 ? (r < 0 ? -1 : 0) : cp_member(w, sdir, ddir, name, &st, depth, rel_len, 0);
    }
    int covered = w->n_covered && is_covered(w, &st);
    if (covered || !S_ISREG(st.st_mode) || st.st_nlink > 1 ||
        (st.st_size > SMALL_FILE && (long long)st.st_blocks * 512 < st.st_size)) {
        close(fd);  /* hard links, sparse files, mount points, a file replaced: the reference */
        return cp_member(w, sdir, ddir, name, &st, depth, rel_len, covered);
    }
    long long size = st.st_size, got = 0;
    int grew = 0, out, src_side = 0, failed = 0, e;
    Py_BEGIN_ALLOW_THREADS
    out = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out >= 0 && size > 0 && size <= SMALL_FILE) {
        /* As the reference: one pread of a byte more than listed (a full answer: it grew) */
        while (got < size) {
            ssize_t k = pread(fd, w->data + got, (size_t)(size + 1 - got), (off_t)got);
            if (k < 0) {
                if (errno == EINTR)
                    continue;
                failed = src_side = 1;
                break;
            }
            if (k == 0)
                break;
            got += k;
        }
        grew = got > size;
        if (grew)
            got = size;
        if (!failed && write_all(out, w->data, (size_t)got, 0) < 0)
            failed = 1;
    } else if (out >= 0 && size > 0) {
        got = copy_range(w, fd, out, size, &src_side);
        if (got < 0) {
            failed = 1;
        } else {
            char c;
            ssize_t k;
            do
                k = pread(fd, &c, 1, (off_t)size);
            while (k < 0 && errno == EINTR);
            if (k < 0)
                failed = src_side = 1;
            grew = k > 0;
        }
    }
    if (out >= 0 && !failed && got < size && ftruncate(out, (off_t)size) < 0)
        failed = 1;
    e = errno;
    close(fd);
    errno = e;
    Py_END_ALLOW_THREADS
    if (out < 0)
        return dst_error(name);
    if (failed) {
        e = errno;
        close(out);
        errno = e;
        if (src_side) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        return dst_error(name);
    }
    w->n_bytes += got;
    int r = set_meta_fd(w, out, &st, name);
    close(out);
    if (r < 0)
        return -1;
    w->n_entries++;
    if (got < size) {
        char msg[128];
        snprintf(msg, sizeof msg, "shrank by %lld bytes while read; zero-padded", size - got);
        return warn(w, rel_len, msg);
    }
    if (grew)
        return warn(w, rel_len, "grew while read; copied the size it had when listed");
    return 0;
}

static int cp_symlink(Walk *w, int sdir, int ddir, const char *name, int depth, size_t rel_len,
                      const struct stat *st) {
    if (w->n_covered && is_covered(w, st))
        return cp_member(w, sdir, ddir, name, st, depth, rel_len, 1);
    char link[PATH_MAX];
    ssize_t n;
    Py_BEGIN_ALLOW_THREADS
    n = readlinkat(sdir, name, link, sizeof link - 1);
    Py_END_ALLOW_THREADS
    if (n < 0 && errno == ENOENT)
        return warn(w, rel_len, "vanished during the copy; skipped");
    if (n < 0 || n >= (ssize_t)sizeof link - 1)
        return cp_member(w, sdir, ddir, name, st, depth, rel_len, 0);
    link[n] = '\0';
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = symlinkat(link, ddir, name);
    if (r == 0 && w->as_root)
        r = fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
    if (r == 0)
        r = utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW);
    Py_END_ALLOW_THREADS
    if (r < 0)
        return dst_error(name);
    w->n_entries++;
    return 0;
}

/* A directory beyond the levels held open: the reference copies it and all below it from its
 * path, if it is still the directory listed: hooks.deep(rel, dev, ino, depth, dstdirfd). */
static int cp_deep(Walk *w, size_t rel_len, const struct stat *st, int depth, int ddir) {
    PyObject *rel = rel_bytes(w, rel_len);
    if (rel == NULL)
        return -1;
    PyObject *r = PyObject_CallMethod(w->hooks, "deep", "OKKii", rel,
                                      (unsigned long long)st->st_dev,
                                      (unsigned long long)st->st_ino, depth, ddir);
    Py_DECREF(rel);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* A directory listed as such: made (mode 0700 until the walk leaves it), then entered. */
static int cp_dir(Walk *w, int sdir, int ddir, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int cfd = open_listed(sdir, name, OPEN_DIR, &st);
    if (cfd < 0) {
        int err = errno;
        int r = lstat_at(w, sdir, name, &st, rel_len);
        if (r != 0)
            return r < 0 ? -1 : 0;
        int covered = w->n_covered && is_covered(w, &st);
        if (cp_member(w, sdir, ddir, name, &st, depth, rel_len, covered) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode) || covered)
            return 0;  /* replaced by a file since the listing: copied as what it is now */
        return dir_not_entered(w, name, err, rel_len);
    }
    if (w->n_covered && is_covered(w, &st)) {
        close(cfd);  /* a followed mount's mount point: the container's view decides */
        return cp_member(w, sdir, ddir, name, &st, depth, rel_len, 1);
    }
    if (w->depth + 1 >= w->max_levels) {
        close(cfd);
        return cp_deep(w, rel_len, &st, depth, ddir);
    }
    int dfd, r;
    Py_BEGIN_ALLOW_THREADS
    r = mkdirat(ddir, name, 0700);
    dfd = r < 0 ? -1 : openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    Py_END_ALLOW_THREADS
    if (dfd < 0) {
        int e = errno;
        close(cfd);
        errno = e;
        return dst_error(name);
    }
    w->n_entries++;
    for (int i = 0; i <= w->depth; i++) {
        if (w->lv[i].dev == st.st_dev && w->lv[i].ino == st.st_ino) {
            close(cfd);
            r = set_meta_fd(w, dfd, &st, name);
            close(dfd);
            if (r < 0)
                return -1;
            return warn(w, rel_len, "directory loop (a bind mount of an ancestor); not entered");
        }
    }
    return push_level(w, cfd, dfd, &st, rel_len);
}

static int cp_other(Walk *w, int sdir, int ddir, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int r = lstat_at(w, sdir, name, &st, rel_len);
    if (r != 0)
        return r < 0 ? -1 : 0;
    if (S_ISDIR(st.st_mode))
        return cp_dir(w, sdir, ddir, name, depth, rel_len);
    if (S_ISREG(st.st_mode))
        return cp_file(w, sdir, ddir, name, depth, rel_len);
    if (S_ISLNK(st.st_mode))
        return cp_symlink(w, sdir, ddir, name, depth, rel_len, &st);
    /* FIFOs, devices, sockets: the reference makes or skips them */
    return cp_member(w, sdir, ddir, name, &st, depth, rel_len, w->n_covered && is_covered(w, &st));
}

static int walk(Walk *w) {
    while (w->depth >= 0) {
        Level *L = &w->lv[w->depth];
        struct linux_dirent64 *d;
        int r = next_dent(w, L, &d);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (w->depth > 0) {
                close(L->fd);
                if (w->copy) {  /* every entry is in it now: its mode and times last */
                    w->rel[L->rel_len] = '\0';  /* this directory's path, for an error */
                    int m = set_meta_fd(w, L->dfd, &L->st, w->rel);
                    close(L->dfd);
                    L->dfd = -1;
                    if (m < 0) {
                        L->fd = -1;
                        return -1;
                    }
                }
            }
            L->fd = -1;
            w->depth--;
            continue;
        }
        if (++w->seen % TICK == 0 && tick(w) < 0)
            return -1;
        size_t rel_len;
        if (push_rel(w, L->rel_len, d->d_name, &rel_len) < 0)
            return -1;
        int depth = w->depth + 1;
        if (w->copy) {
            switch (d->d_type) {
            case DT_REG:
                r = cp_file(w, L->fd, L->dfd, d->d_name, depth, rel_len);
                break;
            case DT_DIR:
                r = cp_dir(w, L->fd, L->dfd, d->d_name, depth, rel_len);
                break;
            default:
                r = cp_other(w, L->fd, L->dfd, d->d_name, depth, rel_len);
                break;
            }
        } else {
            switch (d->d_type) {
            case DT_REG:
                r = do_file(w, L->fd, d->d_name, depth, rel_len);
                break;
            case DT_DIR:
                r = do_dir(w, L->fd, d->d_name, depth, rel_len);
                break;
            default:
                r = do_other(w, L->fd, d->d_name, depth, rel_len);
                break;
            }
        }
        if (r < 0)
            return -1;
    }
    return 0;
}

/* The walk's state for `levels` open directories from dirfd; -1 with an exception. */
static int walk_init(Walk *w, int dirfd, PyObject *hooks, int levels) {
    memset(w, 0, sizeof *w);
    w->hooks = hooks;
    w->owners = PyDict_New();
    w->lv = PyMem_Calloc((size_t)levels, sizeof(Level));
    w->rel_cap = 4096;
    w->rel = PyMem_Malloc(w->rel_cap);
    w->data = PyMem_Malloc(SMALL_FILE + 1);
    if (w->owners == NULL || w->lv == NULL || w->rel == NULL || w->data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < levels; i++)
        w->lv[i].fd = w->lv[i].dfd = -1;
    w->max_levels = levels;  /* walk_free closes what these levels hold from now on */
    struct stat st;
    if (fstat(dirfd, &st) < 0)
        return errno_oserror("fstat");
    w->rel[0] = '\0';
    w->lv[0].fd = dirfd;
    w->lv[0].dev = st.st_dev;
    w->lv[0].ino = st.st_ino;
    w->lv[0].dents = PyMem_Malloc(DENTS_BUF);
    if (w->lv[0].dents == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Closes what the walk opened (never level 0's fds: the caller's) and frees its state. */
static void walk_free(Walk *w) {
    if (w->lv != NULL) {
        for (int i = 0; i < w->max_levels; i++) {
            if (i > 0 && w->lv[i].fd >= 0)
                close(w->lv[i].fd);
            if (i > 0 && w->lv[i].dfd >= 0)
                close(w->lv[i].dfd);
            PyMem_Free(w->lv[i].dents);
        }
    }
    PyMem_Free(w->lv);
    PyMem_Free(w->rel);
    PyMem_Free(w->data);
    PyMem_Free(w->covered);
    Py_XDECREF(w->owners);
}

static int clamp_levels(int levels) {
    return levels < 1 ? 1 : levels > MAX_LEVELS ? MAX_LEVELS : levels;
}

static PyObject *tar_tree(PyObject *self, PyObject *args) {
    (void)self;
    int dirfd, levels;
    PyObject *hooks;
    const char *arcpre;
    Py_ssize_t arcpre_len;
    if (!PyArg_ParseTuple(args, "iOy#i", &dirfd, &hooks, &arcpre, &arcpre_len, &levels))
        return NULL;
    if (arcpre_len > 100) {
        PyErr_SetString(PyExc_ValueError, "prefix too long for the fast path");
        return NULL;
    }
    Walk w;
    int ok = walk_init(&w, dirfd, hooks, clamp_levels(levels));
    w.arcpre = arcpre;
    w.arcpre_len = (size_t)arcpre_len;
    if (ok == 0)
        ok = walk(&w);
    if (ok == 0)
        ok = tick(&w);
    walk_free(&w);
    if (ok < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *copy_tree(PyObject *self, PyObject *args) {
    (void)self;
    int srcfd, dstfd, levels, as_root;
    PyObject *hooks, *covered;
    if (!PyArg_ParseTuple(args, "iiOipO", &srcfd, &dstfd, &hooks, &levels, &as_root, &covered))
        return NULL;
    PyObject *seq = PySequence_Fast(covered, "covered must be a sequence of (dev, ino)");
    if (seq == NULL)
        return NULL;
    Walk w;
    int ok = walk_init(&w, srcfd, hooks, clamp_levels(levels));
    w.arcpre = "";
    w.copy = 1;
    w.as_root = as_root;
    if (ok == 0)
        w.lv[0].dfd = dstfd;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (ok == 0 && n > 0) {
        w.covered = PyMem_Calloc((size_t)n, sizeof(Ident));
        if (w.covered == NULL) {
            PyErr_NoMemory();
            ok = -1;
        }
        for (Py_ssize_t i = 0; ok == 0 && i < n; i++) {
            unsigned long long dev, ino;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "KK", &dev, &ino)) {
                ok = -1;
                break;
            }
            w.covered[i].dev = (dev_t)dev;
            w.covered[i].ino = (ino_t)ino;
            w.n_covered = i + 1;
        }
    }
    Py_DECREF(seq);
    if (ok == 0)
        ok = walk(&w);
    if (ok == 0)
        ok = tick(&w);
    walk_free(&w);
    if (ok < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* -- the system calls of every path resolution (ctrfs.rootfs._calls; _sys is the fallback) -- */

#ifndef SYS_openat2
#define SYS_openat2 437  /* the same on every architecture (added after the tables' unification) */
#endif
#define EAGAIN_RETRIES 128  /* as ctrfs.rootfs._sys.EAGAIN_RETRIES */

struct ctrfs_open_how {  /* struct open_how (include/uapi/linux/openat2.h) */
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/* OSError(err, strerror(err) + extra, path) as the ctypes reference raises it: path None when
 * NULL (or "" and !keep_empty). */
static PyObject *oserror_path(int err, const char *path, int keep_empty, const char *extra) {
    PyObject *fn = path != NULL && (path[0] || keep_empty) ? PyUnicode_DecodeFSDefault(path)
                                                          : (Py_INCREF(Py_None), Py_None);
    if (fn == NULL)
        return NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "%s%s", strerror(err), extra);
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "isO", err, msg, fn);
    Py_DECREF(fn);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* openat2(dirfd, path, flags, resolve, mode=0): a new fd; EAGAIN (a rename or mount racing the
 * resolution) and EINTR are retried EAGAIN_RETRIES times, as the ctypes version does. */
static PyObject *py_openat2(PyObject *self, PyObject *args) {
    (void)self;
    int dirfd;
    const char *path;
    Py_ssize_t path_len;
    unsigned long long flags, resolve, mode = 0;
    if (!PyArg_ParseTuple(args, "iy#KK|K", &dirfd, &path, &path_len, &flags, &resolve, &mode))
        return NULL;
    if ((Py_ssize_t)strlen(path) != path_len) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return NULL;
    }
    struct ctrfs_open_how how = {flags, mode, resolve};
    for (int i = 0; i < EAGAIN_RETRIES; i++) {
        long fd;
        Py_BEGIN_ALLOW_THREADS
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        Py_END_ALLOW_THREADS
        if (fd >= 0)
            return PyLong_FromLong(fd);
        if (errno != EAGAIN && errno != EINTR)
            return oserror_path(errno, path, 1, "");
    }
    return oserror_path(EAGAIN, path, 1, " (gave up after retries)");
}

/* mount_id(fd, name=b""): the mount ID (as in mountinfo) of name under fd, or of fd itself, the
 * final symlink not followed; None where statx cannot tell (STATX_MNT_ID: Linux 5.8). */
static PyObject *py_mount_id(PyObject *self, PyObject *args) {
    (void)self;
    int fd;
    const char *name = "";
    Py_ssize_t name_len = 0;
    if (!PyArg_ParseTuple(args, "i|y#", &fd, &name, &name_len))
        return NULL;
    if ((Py_ssize_t)strlen(name) != name_len) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return NULL;
    }
    struct statx stx;
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = statx(fd, name, AT_SYMLINK_NOFOLLOW | (name_len ? 0 : AT_EMPTY_PATH), STATX_MNT_ID, &stx);
    Py_END_ALLOW_THREADS
    if (r != 0) {
        if (errno == ENOSYS || errno == EINVAL)
            Py_RETURN_NONE;
        return oserror_path(errno, name, 0, "");
    }
    if (!(stx.stx_mask & STATX_MNT_ID))
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(stx.stx_mnt_id);
}

/* fs_type(fd): f_type of the filesystem fd (O_PATH is fine) lives on, from fstatfs(2). */
static PyObject *py_fs_type(PyObject *self, PyObject *args) {
    (void)self;
    int fd, r;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    struct statfs sf;
    Py_BEGIN_ALLOW_THREADS
    r = fstatfs(fd, &sf);
    Py_END_ALLOW_THREADS
    if (r != 0)
        return oserror_path(errno, NULL, 0, "");
    return PyLong_FromUnsignedLong((unsigned long)sf.f_type & 0xFFFFFFFFUL);
}

static PyMethodDef methods[] = {
    {"tar_tree", tar_tree, METH_VARARGS,
     "tar_tree(dirfd, hooks, arcprefix, levels): tar members of the tree below dirfd to hooks.buf"},
    {"copy_tree", copy_tree, METH_VARARGS,
     "copy_tree(srcfd, dstfd, hooks, levels, as_root, covered): copy the tree below srcfd into dstfd"},
    {"openat2", py_openat2, METH_VARARGS,
     "openat2(dirfd, path, flags, resolve, mode=0) -> fd (EAGAIN retried)"},
    {"mount_id", py_mount_id, METH_VARARGS,
     "mount_id(fd, name=b'') -> the mount ID of name under fd (no final symlink followed), or None"},
    {"fs_type", py_fs_type, METH_VARARGS, "fs_type(fd) -> f_type of the filesystem fd is on"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ctrfs._native",
    "The hot loops of ctrfs export and cp in C; ctrfs.ops.archive and ctrfs.ops.copy are the "
    "reference and the fallback.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    s_buf = PyUnicode_InternFromString("buf");
    s_flush = PyUnicode_InternFromString("flush");
    s_warn = PyUnicode_InternFromString("warn");
    if (!s_buf || !s_flush || !s_warn)
        return NULL;
    return PyModule_Create(&module);
}
