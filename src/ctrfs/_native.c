/* ctrfs._native: the hot loop of `ctrfs export` in C (walk + ustar header + small-file data).
 *
 * One function, tar_tree(dirfd, hooks, levels), walks the directory open as `dirfd` depth-first in
 * getdents order (the order of the pure-Python walk in ctrfs.rootfs.fd, so both write the same
 * archive byte for byte) and appends tar members to `hooks.buf` (a bytearray). It is used only on
 * a Root whose mount cannot open devices and has no submounts (a private nodev clone of the
 * container's root mount: ctrfs.rootfs.clone), where a direct openat(O_RDONLY|O_NOFOLLOW|
 * O_NONBLOCK|O_NOCTTY) of a listed name cannot open a device, block on a FIFO or follow a symlink,
 * and fstat on the opened fd then says what was opened.
 *
 * Policy stays in Python. This code writes the common members itself: regular files of one link
 * and at most SMALL_FILE bytes, directories and symlinks, whose names, owners and times fit the
 * ustar fields and which carry no extended attributes. Everything else (big, sparse or
 * multi-link files, devices, FIFOs, sockets, long or non-ASCII names, xattrs, any error) goes to
 * hooks.member(), which writes it with the reference code (TarWriter.add). Warnings go to
 * hooks.warn(), owner names come from hooks.owner(), liveness and progress from hooks.tick()
 * every TICK entries, and a directory deeper than `levels` is walked by hooks.deep(), so this
 * code holds at most `levels` directory fds however deep the tree.
 *
 * docs/security.md: nothing here resolves a path; every open is one component relative to a
 * directory fd this walk opened and checked (fstat after open), never following a symlink.
 */
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
} Level;

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

/* A regular file listed as such. */
static int do_file(Walk *w, int dirfd, const char *name, int depth, size_t rel_len) {
    struct stat st;
    int fd;
    Py_BEGIN_ALLOW_THREADS
    fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    Py_END_ALLOW_THREADS
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
    int cfd, err = 0;
    Py_BEGIN_ALLOW_THREADS
    cfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cfd < 0) {
        err = errno;
    } else if (fstat(cfd, &st) < 0) {
        err = errno;
        close(cfd);
        cfd = -1;
    }
    Py_END_ALLOW_THREADS
    if (cfd < 0) {
        int r = lstat_at(w, dirfd, name, &st, rel_len);
        if (r != 0)
            return r < 0 ? -1 : 0;
        if (member(w, dirfd, name, &st, depth, rel_len) < 0)
            return -1;
        if (!S_ISDIR(st.st_mode))
            return 0;  /* replaced by a file since the listing: written as what it is now */
        if (err == ENOENT || err == ENOTDIR || err == ELOOP)
            return warn(w, rel_len, "vanished or replaced during the walk; skipped");
        if (err == EACCES || err == EPERM)
            return warn(w, rel_len, "permission denied; not entered");
        errno = err;
        return errno_oserror(name);
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
    Level *L = &w->lv[w->depth + 1];
    if (L->dents == NULL) {
        L->dents = PyMem_Malloc(DENTS_BUF);
        if (L->dents == NULL) {
            close(cfd);
            PyErr_NoMemory();
            return -1;
        }
    }
    L->fd = cfd;
    L->dev = st.st_dev;
    L->ino = st.st_ino;
    L->rel_len = rel_len;
    L->pos = L->end = 0;
    L->eof = 0;
    w->depth++;
    return 0;
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

static int walk(Walk *w) {
    while (w->depth >= 0) {
        Level *L = &w->lv[w->depth];
        struct linux_dirent64 *d;
        int r = next_dent(w, L, &d);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (w->depth > 0)
                close(L->fd);
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
        if (r < 0)
            return -1;
    }
    return 0;
}

static PyObject *tar_tree(PyObject *self, PyObject *args) {
    (void)self;
    int dirfd, levels;
    PyObject *hooks;
    const char *arcpre;
    Py_ssize_t arcpre_len;
    if (!PyArg_ParseTuple(args, "iOy#i", &dirfd, &hooks, &arcpre, &arcpre_len, &levels))
        return NULL;
    if (levels < 1)
        levels = 1;
    if (levels > MAX_LEVELS)
        levels = MAX_LEVELS;
    if (arcpre_len > 100) {
        PyErr_SetString(PyExc_ValueError, "prefix too long for the fast path");
        return NULL;
    }
    Walk w;
    memset(&w, 0, sizeof w);
    w.hooks = hooks;
    w.arcpre = arcpre;
    w.arcpre_len = (size_t)arcpre_len;
    w.max_levels = levels;
    w.owners = PyDict_New();
    w.lv = PyMem_Calloc((size_t)levels, sizeof(Level));
    w.rel_cap = 4096;
    w.rel = PyMem_Malloc(w.rel_cap);
    w.data = PyMem_Malloc(SMALL_FILE + 1);
    int ok = -1;
    if (w.owners == NULL || w.lv == NULL || w.rel == NULL || w.data == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (int i = 0; i < levels; i++)
        w.lv[i].fd = -1;
    struct stat st;
    if (fstat(dirfd, &st) < 0) {
        errno_oserror("fstat");
        goto done;
    }
    w.rel[0] = '\0';
    w.lv[0].fd = dirfd;
    w.lv[0].dev = st.st_dev;
    w.lv[0].ino = st.st_ino;
    w.lv[0].dents = PyMem_Malloc(DENTS_BUF);
    if (w.lv[0].dents == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    ok = walk(&w);
    if (ok == 0)
        ok = tick(&w);
done:
    if (w.lv != NULL) {
        for (int i = 0; i < levels; i++) {
            if (i > 0 && w.lv[i].fd >= 0)
                close(w.lv[i].fd);
            PyMem_Free(w.lv[i].dents);
        }
    }
    PyMem_Free(w.lv);
    PyMem_Free(w.rel);
    PyMem_Free(w.data);
    Py_XDECREF(w.owners);
    if (ok < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"tar_tree", tar_tree, METH_VARARGS,
     "tar_tree(dirfd, hooks, arcprefix, levels): tar members of the tree below dirfd to hooks.buf"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ctrfs._native",
    "The hot loop of ctrfs export in C; ctrfs.ops.archive is the reference and the fallback.", -1,
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
