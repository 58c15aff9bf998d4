#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Landlock's user-space ABI, written out here: Debian 12's kernel headers stop at ABI 2, the
 * kernels ocpm runs on go further, and the values are a stable ABI. */
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1

#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_MAKE_SYM (1ULL << 12) /* bits 4..12: remove and make entries (ABI 1) */
#define LL_FS_REFER (1ULL << 13)    /* ABI 2 */
#define LL_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ULL << 1)

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

struct ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

/* Rights that make sense on a file (not a directory). */
#define LL_FILE_RIGHTS (LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | LL_FS_TRUNCATE | LL_FS_IOCTL_DEV)
#define LL_READ_RIGHTS (LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR)

static int abi = -1;

int sandbox_abi(void)
{
    if (abi < 0) {
        long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
        abi = v > 0 ? (int)v : 0;
    }
    return abi;
}

/* Every file-system right this kernel knows: all of them are handled, so whatever a rule does
 * not grant is denied. */
static uint64_t sandbox_handled(void)
{
    int v = sandbox_abi();
    uint64_t fs = (LL_FS_MAKE_SYM << 1) - 1;
    if (v >= 2)
        fs |= LL_FS_REFER;
    if (v >= 3)
        fs |= LL_FS_TRUNCATE;
    if (v >= 5)
        fs |= LL_FS_IOCTL_DEV;
    return fs;
}

int sandbox_ruleset(void)
{
    int v = sandbox_abi();
    if (v == 0) {
        errno = EOPNOTSUPP;
        return -1;
    }
    struct ll_ruleset_attr a = {.handled_access_fs = sandbox_handled()};
    if (v >= 6)
        a.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
    /* Older kernels take the shorter struct (they refuse a larger one with fields set). */
    size_t size = v >= 6 ? sizeof a : v >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
    long fd = syscall(SYS_landlock_create_ruleset, &a, size, 0U);
    return fd < 0 ? -1 : (int)fd;
}

int sandbox_allow_fd(int ruleset, int fd, int write)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    uint64_t rights = write ? sandbox_handled() : LL_READ_RIGHTS;
    if (!S_ISDIR(st.st_mode))
        rights &= LL_FILE_RIGHTS;
    struct ll_path_beneath pb = {.allowed_access = rights, .parent_fd = fd};
    return syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0U) == 0 ? 0 : -1;
}

int sandbox_allow(int ruleset, const char *path, int write)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 1 : -1;
    int rc = sandbox_allow_fd(ruleset, fd, write);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int sandbox_enter(int ruleset)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return syscall(SYS_landlock_restrict_self, ruleset, 0U) == 0 ? 0 : -1;
}
