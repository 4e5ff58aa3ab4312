// userfaultfd ABI constants newer than the distro's <linux/userfaultfd.h>.
// The running kernel may be newer than the header we build against, so every
// constant we use is defined here when missing and every feature is probed at
// run time (UFFDIO_API reports what the kernel really has).
#pragma once
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#ifndef UFFD_FEATURE_MINOR_SHMEM
#define UFFD_FEATURE_MINOR_SHMEM (1 << 10)
#endif
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef UFFD_PAGEFAULT_FLAG_MINOR
#define UFFD_PAGEFAULT_FLAG_MINOR (1 << 2)
#endif
#ifndef UFFDIO_REGISTER_MODE_MINOR
#define UFFDIO_REGISTER_MODE_MINOR ((__u64)1 << 2)
#endif
#ifndef UFFDIO_COPY_MODE_WP
#define UFFDIO_COPY_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

// ioctl numbers (bit positions in the `ioctls` masks the kernel reports)
#define SOS_UFFDIO_REGISTER_NR 0x00
#define SOS_UFFDIO_UNREGISTER_NR 0x01
#define SOS_UFFDIO_WAKE_NR 0x02
#define SOS_UFFDIO_COPY_NR 0x03
#define SOS_UFFDIO_ZEROPAGE_NR 0x04
#define SOS_UFFDIO_MOVE_NR 0x05
#define SOS_UFFDIO_WRITEPROTECT_NR 0x06
#define SOS_UFFDIO_CONTINUE_NR 0x07
#define SOS_UFFDIO_POISON_NR 0x08
#define SOS_UFFDIO_API_NR 0x3F

// UFFDIO_MOVE (6.8) and UFFDIO_POISON (6.6): own struct names so a newer
// header that also defines them does not clash.
struct sos_uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
  __u64 mode;
  __s64 move;
};
#define SOS_UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define SOS_UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#define SOS_UFFDIO_MOVE _IOWR(0xAA, SOS_UFFDIO_MOVE_NR, struct sos_uffdio_move)

struct sos_uffdio_poison {
  struct uffdio_range range;
  __u64 mode;
  __s64 updated;
};
#define SOS_UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
#define SOS_UFFDIO_POISON _IOWR(0xAA, SOS_UFFDIO_POISON_NR, struct sos_uffdio_poison)
