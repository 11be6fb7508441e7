// A real Linux guest for the libvirt peer tests (DESIGN §7, issue #14): Debian's cloud kernel
// booted directly (no disk, no firmware boot loader) under TCG with a busybox initramfs whose
// /init (test/peer/libvirt/guest-init.sh) loads virtio_pci, virtio_balloon, virtio_mem and
// virtio_console, onlines hot-plugged memory and prints markers on the serial console, which
// libvirt writes to a file (<serial type='file'>). Tests wait for the markers instead of sleeping.
//
// The image is built (cached) by test/peer/libvirt/guest-image.sh, which the libvirt peer setup
// runs; guestImage() runs it too, so a cold cache also works (it fails loudly with apt's words).

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, LibvirtError } from '../../src/libvirt/index.ts';
import type { DomainRef, LibvirtClient } from '../../src/libvirt/index.ts';

export interface GuestImage {
  /** ~/.cache/vmmem/guest/<key> */
  readonly dir: string;
  readonly kernel: string;
  readonly initrd: string;
  /** The build stamp (.complete): kernel and busybox versions, modules, build time. */
  readonly stamp: string;
}

const BUILDER = join(import.meta.dirname, '..', 'peer', 'libvirt', 'guest-image.sh');

let cached: GuestImage | undefined;

/** The guest image, built on first use (cached across runs in ~/.cache/vmmem/guest). */
export function guestImage(): GuestImage {
  if (cached) return cached;
  const r = spawnSync('bash', [BUILDER], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    throw new Error(`guest image: ${BUILDER} failed (${r.error ? r.error.message : `exit ${r.status}`}):\n${r.stderr.trim()}`);
  }
  const dir = r.stdout.trim().split('\n').pop() ?? '';
  const kernel = join(dir, 'vmlinuz');
  const initrd = join(dir, 'initrd.img');
  if (!existsSync(kernel) || !existsSync(initrd)) throw new Error(`guest image: ${BUILDER} printed '${dir}', which has no vmlinuz/initrd.img`);
  cached = { dir, kernel, initrd, stamp: readFileSync(join(dir, '.complete'), 'utf8') };
  return cached;
}

export interface VirtioMemOptions {
  /** `<size>`: the device's maximum, MiB. */
  sizeMiB: number;
  /** `<block>`: the plug granularity, MiB (default 2, QEMU's minimum on x86 with THP). */
  blockMiB?: number;
  /** `<requested>` at boot, MiB (default 0). */
  requestedMiB?: number;
}

export interface GuestDomainOptions {
  /**
   * Boot memory in MiB: `<memory>` without virtio-mem; with virtio-mem the one NUMA cell's
   * memory (libvirt then computes `<memory>` = cell + device sizes). Default 256.
   */
  bootMiB?: number;
  /** `<currentMemory>` (the balloon target at boot), MiB. Default: boot memory + requested virtio-mem. */
  currentMiB?: number;
  /** Guest drivers not to load, e.g. ['virtio_balloon'] for a guest without the balloon driver. */
  skipDrivers?: ('virtio_balloon' | 'virtio_mem')[];
  /** `<memballoon><stats period>` in seconds (default 2; 0 = no stats). */
  statsPeriodS?: number;
  /** Add a virtio-mem device (and the NUMA cell and `<maxMemory slots>` it needs). */
  virtioMem?: VirtioMemOptions;
  uuid?: string;
}

/** The domain XML of a test guest writing its console to `serialPath`. */
export function guestDomainXml(name: string, image: GuestImage, serialPath: string, o: GuestDomainOptions = {}): string {
  const boot = o.bootMiB ?? 256;
  const vm = o.virtioMem;
  const total = boot + (vm?.sizeMiB ?? 0);
  // The balloon covers the memory the guest has: boot memory plus what virtio-mem plugged at boot.
  const cur = o.currentMiB ?? boot + (vm?.requestedMiB ?? 0);
  const cmdline = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    // the kernel onlines the memory blocks virtio-mem adds, as ZONE_MOVABLE so they can be unplugged again
    'memhp_default_state=online_movable',
    ...(o.skipDrivers?.length ? [`vmmem.skip=${o.skipDrivers.join(',')}`] : []),
  ].join(' ');
  const period = o.statsPeriodS ?? 2;
  return [
    `<domain type='qemu'>`,
    `  <name>${name}</name>`,
    o.uuid ? `  <uuid>${o.uuid}</uuid>` : '',
    vm ? `  <maxMemory slots='4' unit='MiB'>${total + 1024}</maxMemory>` : '',
    `  <memory unit='MiB'>${total}</memory>`,
    `  <currentMemory unit='MiB'>${cur}</currentMemory>`,
    `  <vcpu>1</vcpu>`,
    `  <os>`,
    `    <type arch='x86_64' machine='pc'>hvm</type>`,
    `    <kernel>${image.kernel}</kernel>`,
    `    <initrd>${image.initrd}</initrd>`,
    `    <cmdline>${cmdline}</cmdline>`,
    `  </os>`,
    vm ? `  <cpu><numa><cell id='0' cpus='0' memory='${boot}' unit='MiB'/></numa></cpu>` : '',
    `  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>`,
    `  <devices>`,
    `    <emulator>/usr/bin/qemu-system-x86_64</emulator>`,
    `    <serial type='file'><source path='${serialPath}'/><target port='0'/></serial>`,
    `    <memballoon model='virtio'>${period > 0 ? `<stats period='${period}'/>` : ''}</memballoon>`,
    vm
      ? [
          `    <memory model='virtio-mem'>`,
          `      <target>`,
          `        <size unit='MiB'>${vm.sizeMiB}</size>`,
          `        <node>0</node>`,
          `        <block unit='MiB'>${vm.blockMiB ?? 2}</block>`,
          `        <requested unit='MiB'>${vm.requestedMiB ?? 0}</requested>`,
          `      </target>`,
          `    </memory>`,
        ].join('\n')
      : '',
    `  </devices>`,
    `</domain>`,
  ]
    .filter(Boolean)
    .join('\n');
}

export interface Guest {
  readonly name: string;
  readonly dom: DomainRef;
  readonly serialPath: string;
  /** Milliseconds from virDomainCreate to the ready marker on the console. */
  readonly bootMs: number;
  /** The guest's own uptime at the ready marker, seconds (what the kernel + init took under TCG). */
  readonly guestBootS: number;
  /** The ready marker line: loaded/skipped drivers, MemTotal. */
  readonly readyLine: string;
  /** Everything the console printed so far. */
  console(): string;
  /**
   * Resolves with the first console line (after `afterOffset`, a console() length) matching `re`;
   * rejects after `timeoutMs` with the console's tail.
   */
  waitFor(re: RegExp, timeoutMs?: number, afterOffset?: number): Promise<string>;
  /** The guest's MemTotal in KiB from its last VMMEM-GUEST-MEM / READY line. */
  memTotalKiB(): number | undefined;
  /** Waits until the guest's MemTotal satisfies `ok` (it prints changes once a second); returns it. */
  waitForMemTotal(ok: (kib: number) => boolean, timeoutMs?: number): Promise<number>;
  /** Destroy and undefine (idempotent). */
  remove(): Promise<void>;
}

const READY = /^VMMEM-GUEST-READY .*$/m;

/**
 * Defines and starts a guest on `client` (a qemu:// connection of test/env/libvirtd.ts), waits for
 * its ready marker (default 180 s: TCG on a loaded 2-core machine) and returns it.
 * `dir` holds the console file; use the harness's `Libvirtd.dir` so stop() removes it.
 */
export async function startGuest(client: LibvirtClient, name: string, dir: string, o: GuestDomainOptions & { bootTimeoutMs?: number } = {}): Promise<Guest> {
  const image = guestImage();
  const serialPath = join(dir, `${name}.console`);
  const dom0 = await client.domainDefineXml(guestDomainXml(name, image, serialPath, o));
  const read = (): string => {
    try {
      return readFileSync(serialPath, 'utf8');
    } catch {
      return '';
    }
  };
  const waitFor = async (re: RegExp, timeoutMs = 60_000, afterOffset = 0): Promise<string> => {
    const end = Date.now() + timeoutMs;
    const rx = new RegExp(re.source, re.flags.includes('m') ? re.flags : `${re.flags}m`);
    for (;;) {
      const text = read().slice(afterOffset);
      const m = rx.exec(text);
      if (m) return m[0];
      if (Date.now() > end) {
        throw new Error(`guest ${name}: no console line matching ${re} within ${timeoutMs} ms; console tail:\n${text.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const t0 = Date.now();
  const dom = await client.domainCreate(dom0);
  let readyLine: string;
  try {
    readyLine = await waitFor(READY, o.bootTimeoutMs ?? 180_000);
  } catch (e) {
    await removeGuest(client, name);
    throw e;
  }
  const bootMs = Date.now() - t0;
  if (/VMMEM-GUEST-ERROR/.test(read())) {
    const err = read().split('\n').filter((l) => l.includes('VMMEM-GUEST-ERROR'));
    await removeGuest(client, name);
    throw new Error(`guest ${name} booted with errors: ${err.join('; ')}`);
  }
  const memTotalKiB = (): number | undefined => {
    const last = [...read().matchAll(/^VMMEM-GUEST-(?:READY|MEM) .*memtotal_kib=(\d+)/gm)].at(-1);
    return last ? Number(last[1]) : undefined;
  };
  const waitForMemTotal = async (ok: (kib: number) => boolean, timeoutMs = 30_000): Promise<number> => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = memTotalKiB();
      if (v !== undefined && ok(v)) return v;
      if (Date.now() > end) throw new Error(`guest ${name}: MemTotal ${v} KiB did not reach the expected value within ${timeoutMs} ms; console tail:\n${read().slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const guestBootS = Number(/boot_s=([0-9.]+)/.exec(readyLine)?.[1] ?? NaN);
  return {
    name,
    dom,
    serialPath,
    bootMs,
    guestBootS,
    readyLine,
    console: read,
    waitFor,
    memTotalKiB,
    waitForMemTotal,
    remove: () => removeGuest(client, name),
  };
}

async function removeGuest(c: LibvirtClient, name: string): Promise<void> {
  try {
    const dom = await c.lookupDomainByName(name);
    if (await c.domainIsActive(dom)) await c.domainDestroy(dom);
    if (await c.domainIsPersistent(dom)) await c.domainUndefine(dom);
  } catch (e) {
    if (!(e instanceof LibvirtError && e.code === ErrorCode.NO_DOMAIN)) throw e;
  }
}
