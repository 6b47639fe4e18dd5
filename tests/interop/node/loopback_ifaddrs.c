/*
 * LD_PRELOAD shim: getifaddrs() reports only loopback interfaces, so libwebrtc gathers ICE host
 * candidates on 127.0.0.1 / ::1 only.
 *
 * Why: filtering the candidates a peer *signals* is not enough. libwebrtc still opens a socket on
 * every interface and pairs each of them with the remote's loopback candidates; a socket bound to
 * the machine's LAN address can reach 127.0.0.1 / ::1, so ICE happily selects e.g.
 * "fd00::2 -> ::1". @roamhq/wrtc exposes no option to ignore interfaces (its RTCConfiguration only
 * knows iceServers, iceTransportPolicy, bundlePolicy, rtcpMuxPolicy, iceCandidatePoolSize,
 * portRange, sdpSemantics), and its network manager enumerates interfaces with getifaddrs().
 *
 * Non-loopback entries keep their place in glibc's single allocation (so freeifaddrs still works)
 * but lose their address, which libwebrtc (like most callers) skips.
 *
 * Build: cc -shared -fPIC -O2 -o loopback_ifaddrs.so loopback_ifaddrs.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

typedef int (*getifaddrs_fn)(struct ifaddrs **);

int getifaddrs(struct ifaddrs **ifap) {
    getifaddrs_fn real = (getifaddrs_fn)dlsym(RTLD_NEXT, "getifaddrs");
    if (real == NULL) {
        return -1;
    }
    int rc = real(ifap);
    if (rc != 0) {
        return rc;
    }
    for (struct ifaddrs *entry = *ifap; entry != NULL; entry = entry->ifa_next) {
        if ((entry->ifa_flags & IFF_LOOPBACK) == 0) {
            entry->ifa_addr = NULL;
            entry->ifa_netmask = NULL;
            entry->ifa_broadaddr = NULL; /* also ifa_dstaddr (same union member) */
        }
    }
    return 0;
}
