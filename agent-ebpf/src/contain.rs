//! Network containment for a pilot's cgroup (cgroup sock_addr hooks: kernel-enforced, whether
//! or not tracing saw the syscall). Every TCP/UDP destination not allowed is rewritten to the
//! agent's sink on loopback, so the connect succeeds and the pilot behaves as it would live;
//! getpeername gives the original destination back. Loopback is production too: only ports
//! the pilot itself bound are reached for real.
use agent_common::{Dest, SinkConfig};
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::generated::bpf_get_socket_cookie,
    macros::{cgroup_sock, cgroup_sock_addr, map},
    maps::{Array, HashMap, LruHashMap},
    programs::{SockAddrContext, SockContext},
};

use crate::diag;

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOCK_STREAM: u32 = 1;
const ALLOW: i32 = 1;
const REJECT: i32 = 0;

/// The sink (index 0).
#[map]
static SINK: Array<SinkConfig> = Array::with_max_entries(1, 0);

/// Destinations the operator allowed (`--allow ADDR:PORT`).
#[map]
static ALLOWED: HashMap<Dest, u8> = HashMap::with_max_entries(256, 0);

/// Ports live services listen on: a pilot may not bind them (it could steal their traffic
/// through SO_REUSEPORT).
#[map]
static LIVE_PORTS: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);

/// Addresses the pilot bound (0.0.0.0/:: for wildcard binds): loopback connections to them
/// stay inside the pilot. Keyed by address and port, not port alone: binding 127.0.0.2:P
/// must not open a way to a live listener on 127.0.0.1:P.
#[map]
static PILOT_BOUND: HashMap<Dest, u8> = HashMap::with_max_entries(4096, 0);

/// Original destination of each redirected socket (key: socket cookie), for getpeername and
/// the sink's report.
#[map]
static ORIGINAL: LruHashMap<u64, Dest> = LruHashMap::with_max_entries(65536, 0);

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    redirect::<false>(&ctx, false)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    redirect::<true>(&ctx, false)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    redirect::<false>(&ctx, true)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    redirect::<true>(&ctx, true)
}

#[cgroup_sock_addr(getpeername4)]
pub fn getpeername4(ctx: SockAddrContext) -> i32 {
    restore::<false>(&ctx)
}

#[cgroup_sock_addr(getpeername6)]
pub fn getpeername6(ctx: SockAddrContext) -> i32 {
    restore::<true>(&ctx)
}

#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    refuse_live_port(&ctx)
}

#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    refuse_live_port(&ctx)
}

#[cgroup_sock(post_bind4)]
pub fn post_bind4(ctx: SockContext) -> i32 {
    remember_bound::<false>(&ctx)
}

#[cgroup_sock(post_bind6)]
pub fn post_bind6(ctx: SockContext) -> i32 {
    remember_bound::<true>(&ctx)
}

/// The verifier lets IPv4 hooks touch only `user_ip4` and IPv6 hooks only `user_ip6`, even on
/// paths never taken: each hook gets its own copy of the code (`V6`).
fn dest_of<const V6: bool>(sa: &bpf_sock_addr) -> Dest {
    if V6 {
        let ip = [sa.user_ip6[0], sa.user_ip6[1], sa.user_ip6[2], sa.user_ip6[3]];
        Dest { family: AF_INET6, port: sa.user_port, ip }
    } else {
        Dest { family: AF_INET, port: sa.user_port, ip: [sa.user_ip4, 0, 0, 0] }
    }
}

fn is_loopback(d: &Dest) -> bool {
    match d.family {
        // 127.0.0.0/8: first byte in memory (network order) is 127.
        AF_INET => d.ip[0] & 0xff == 127,
        // ::1, or ::ffff:127.x.y.z
        _ => {
            (d.ip[0] == 0 && d.ip[1] == 0 && d.ip[2] == 0 && d.ip[3] == u32::from_be(1))
                || (d.ip[0] == 0 && d.ip[1] == 0 && d.ip[2] == u32::from_be(0xffff) && d.ip[3] & 0xff == 127)
        }
    }
}

fn redirect<const V6: bool>(ctx: &SockAddrContext, datagram: bool) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let dest = dest_of::<V6>(sa);
    if unsafe { ALLOWED.get(&dest) }.is_some() {
        return ALLOW;
    }
    if is_loopback(&dest) && bound_by_pilot(&dest) {
        return ALLOW;
    }
    let Some(sink) = SINK.get(0) else { return REJECT };
    let udp = datagram || sa.type_ != SOCK_STREAM;
    // An IPv4-mapped destination goes to the IPv4 sink: address and port both.
    let v4_sink = !V6 || dest.ip[2] == u32::from_be(0xffff);
    let port = match (v4_sink, udp) {
        (true, false) => sink.tcp4_port,
        (true, true) => sink.udp4_port,
        (false, false) => sink.tcp6_port,
        (false, true) => sink.udp6_port,
    };
    if port == 0 {
        return REJECT;
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    if ORIGINAL.insert(&cookie, &dest, 0).is_err() {
        diag::log_original_lost(u16::from_be(dest.port as u16) as u32);
    }
    if !V6 {
        sa.user_ip4 = u32::to_be(0x7f00_0001); // 127.0.0.1
    } else if dest.ip[2] == u32::from_be(0xffff) {
        // IPv4-mapped destination on a dual-stack socket: the IPv4 sink, mapped.
        set_ip6(sa, [0, 0, u32::to_be(0xffff), u32::to_be(0x7f00_0001)]);
    } else {
        set_ip6(sa, [0, 0, 0, u32::to_be(1)]);
    }
    sa.user_port = port;
    ALLOW
}

/// Four 4-byte stores (the verifier refuses wider writes on some kernels).
fn set_ip6(sa: &mut bpf_sock_addr, ip: [u32; 4]) {
    unsafe {
        core::ptr::write_volatile(&mut sa.user_ip6[0], ip[0]);
        core::ptr::write_volatile(&mut sa.user_ip6[1], ip[1]);
        core::ptr::write_volatile(&mut sa.user_ip6[2], ip[2]);
        core::ptr::write_volatile(&mut sa.user_ip6[3], ip[3]);
    }
}

fn restore<const V6: bool>(ctx: &SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut _) };
    if let Some(orig) = unsafe { ORIGINAL.get(&cookie) } {
        let orig = *orig;
        if V6 && orig.family == AF_INET6 {
            set_ip6(sa, orig.ip);
        } else if !V6 && orig.family == AF_INET {
            sa.user_ip4 = orig.ip[0];
        } else {
            return ALLOW;
        }
        sa.user_port = orig.port;
    }
    ALLOW
}

fn refuse_live_port(ctx: &SockAddrContext) -> i32 {
    // Map keys must live on the stack, not in the context.
    let port: u32 = unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).user_port) };
    if port != 0 && unsafe { LIVE_PORTS.get(&port) }.is_some() {
        return REJECT;
    }
    ALLOW
}

/// Did the pilot bind this address (or the wildcard address on this port)?
fn bound_by_pilot(dest: &Dest) -> bool {
    if unsafe { PILOT_BOUND.get(dest) }.is_some() {
        return true;
    }
    let wildcard = Dest { family: dest.family, port: dest.port, ip: [0; 4] };
    if unsafe { PILOT_BOUND.get(&wildcard) }.is_some() {
        return true;
    }
    // ::ffff:a.b.c.d from a dual-stack socket is a.b.c.d, bound as IPv4.
    if dest.family == AF_INET6 && dest.ip[2] == u32::from_be(0xffff) {
        let v4 = Dest { family: AF_INET, port: dest.port, ip: [dest.ip[3], 0, 0, 0] };
        let any4 = Dest { family: AF_INET, port: dest.port, ip: [0; 4] };
        return unsafe { PILOT_BOUND.get(&v4) }.is_some() || unsafe { PILOT_BOUND.get(&any4) }.is_some();
    }
    false
}

fn remember_bound<const V6: bool>(ctx: &SockContext) -> i32 {
    let sk = unsafe { &*ctx.sock };
    // bpf_sock.src_port is in host order; keep ports in network order like user_port.
    let port = (sk.src_port as u16).to_be() as u32;
    let dest = if V6 {
        Dest { family: AF_INET6, port, ip: [sk.src_ip6[0], sk.src_ip6[1], sk.src_ip6[2], sk.src_ip6[3]] }
    } else {
        Dest { family: AF_INET, port, ip: [sk.src_ip4, 0, 0, 0] }
    };
    if PILOT_BOUND.insert(&dest, &1, 0).is_err() {
        diag::log_bound_lost(u16::from_be(port as u16) as u32);
    }
    ALLOW
}
