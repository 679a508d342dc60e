#!/usr/bin/env python3
"""Sorts the OTA server's profile samples into the categories docs/BENCHMARKS.md quotes.

    perf script -i FILE.data -F comm,tid,ip,sym > FILE.script   # FILE.data from PERF=FILE
    scripts/bench/perf-categories.py FILE.script

Each sample goes to the first category whose function appears in its call stack, by thread
(tokio workers, the database thread `warden-ota-db`, the main thread); percentages are of
all samples of the server. A second table sorts the samples spent in the kernel by what
entered it (TCP system calls, futex wake-ups and waits, epoll, file I/O, page faults).
"""
import collections,re,sys
samples=[];cur=None
for line in open(sys.argv[1],errors='replace'):
    if not line.strip():
        if cur: samples.append(cur); cur=None
        continue
    if not line.startswith((' ','\t')):
        cur=[line.split()[0],[]]
    else:
        parts=line.split(None,1)
        cur[1].append(parts[1].strip() if len(parts)>1 else '?')
if cur: samples.append(cur)
tot=len(samples)
cats=collections.Counter()
def has(s,*keys): return any(k in s for k in keys)
for comm,st in samples:
    s=' | '.join(st)
    if comm.startswith('warden-ota-db'):
        if 'append_in' in s: c='db: audit append'
        elif 'execute_batch' in s: c='db: commit'
        elif has(s,'apply_step','store_write'): c='db: step writes'
        elif has(s,'futex','recv_timeout','__schedule'): c='db: wait/wake'
        elif has(s,'session connected','close_session','insert_session','update_session'): c='db: session rows'
        else: c='db: other'
    elif comm.startswith('tokio'):
        if has(s,'SSL_do_handshake','ossl_statem','SslStream<S>>::accept','accept{async','state_machine') : c='tokio: TLS handshake'
        elif 'handle_admin' in s: c='tokio: handle_admin (plan, store send, response)'
        elif has(s,'SSL_write','bwrite','__sys_sendto'): c='tokio: TLS/TCP write'
        elif has(s,'SSL_read','bread','__sys_recvfrom'): c='tokio: TLS/TCP read'
        elif has(s,'park_internal','epoll_wait','futex_w','__schedule','Driver::turn'): c='tokio: park/epoll/wake'
        elif 'hyper' in s: c='tokio: hyper (parse/encode/dispatch)'
        elif has(s,'close_session','connection::{{closure}}'): c='tokio: connection setup/teardown'
        elif '[unknown]' in s: c='tokio: unknown (openssl without frames)'
        else: c='tokio: other'
    else: c=comm
    cats[c]+=1
for k,v in sorted(cats.items(), key=lambda x:-x[1]): print(f"{100*v/tot:5.1f}% {k}")

# Kernel samples (the frames above the system-call or fault entry) by what entered the kernel.
kernel=collections.Counter()
for comm,st in samples:
    above=[]
    for f in st:
        if f.startswith(('entry_SYSCALL_64','asm_exc_','asm_sysvec','asm_common_interrupt')): break
        above.append(f)
    else:
        continue
    if not above: continue
    s=' | '.join(st)
    if has(s,'__x64_sys_sendto','__x64_sys_recvfrom','__sys_accept','__x64_sys_accept','__x64_sys_close','__x64_sys_shutdown','tcp_','sock_'): k='TCP: send, receive, accept, close'
    elif 'futex' in s: k='futex: thread wake-ups and waits'
    elif 'epoll' in s: k='epoll'
    elif has(s,'fsync','pwrite','pread','ext4','__x64_sys_write','__x64_sys_read'): k='file I/O: WAL writes, fsync'
    elif 'page_fault' in s: k='page faults'
    else: k='other'
    kernel[k]+=1
print(f"\nkernel: {100*sum(kernel.values())/tot:.1f}% of all samples")
for k,v in kernel.most_common(): print(f"{100*v/tot:5.1f}% kernel: {k}")
