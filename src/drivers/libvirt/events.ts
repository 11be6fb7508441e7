// Domain events for the libvirt driver: one registration per event kind per
// connection, shared by the XML cache (which must hear every definition
// change whether or not anyone called events()) and by events() listeners.
// libvirt events -> DriverEvent:
//   lifecycle DEFINED/UNDEFINED      -> 'config'     (the definition changed)
//   other lifecycle events           -> 'lifecycle'
//   BALLOON_CHANGE                   -> 'balloon'    (actual, bytes)
//   DEVICE_ADDED / DEVICE_REMOVED    -> 'config'
//   MEMORY_DEVICE_SIZE_CHANGE (7.9+) -> 'memoryDevice' (size, bytes)
import type { DriverEvent } from '../driver.ts';
import { LibvirtError, LifecycleEventType } from '../../libvirt/index.ts';
import type { DomainEvent, LibvirtClient, Subscription } from '../../libvirt/index.ts';
import { KIB } from './observe.ts';

export type DomainEventListener = (ev: DomainEvent) => void;

export class EventHub {
  private client: LibvirtClient | undefined;
  private subs: Subscription[] = [];
  private registering: Promise<number> | undefined;
  private readonly listeners = new Set<DomainEventListener>();
  /** False when the daemon refused MEMORY_DEVICE_SIZE_CHANGE (libvirt < 7.9). */
  memoryDeviceEvents = true;

  add(l: DomainEventListener): void {
    this.listeners.add(l);
  }

  remove(l: DomainEventListener): void {
    this.listeners.delete(l);
  }

  private deliver = (ev: DomainEvent): void => {
    for (const l of this.listeners) l(ev);
  };

  /** Registers the callbacks on `c` once; resolves to the number of calls that took (0 when already done). */
  ensure(c: LibvirtClient): Promise<number> {
    if (this.client === c && !c.closed) return this.registering ?? Promise.resolve(0);
    this.client = c;
    this.subs = [];
    const p = this.register(c);
    this.registering = p;
    p.then(
      () => {
        if (this.registering === p) this.registering = undefined;
      },
      () => {
        if (this.registering === p) {
          this.registering = undefined;
          this.client = undefined;
        }
      },
    );
    return p;
  }

  private async register(c: LibvirtClient): Promise<number> {
    const d = this.deliver;
    const required = [c.onLifecycle(d), c.onBalloonChange(d), c.onDeviceAdded(d), c.onDeviceRemoved(d)];
    const memdev = c.onMemoryDeviceSizeChange(d).then(
      (s) => s,
      (e: unknown) => {
        // An older daemon does not know the event id: the one event this driver can do without.
        if (e instanceof LibvirtError && e.reason === 'remote') return undefined;
        throw e;
      },
    );
    const settled = await Promise.allSettled([...required, memdev]);
    const subs: Subscription[] = [];
    let failure: unknown;
    for (const r of settled) {
      if (r.status === 'fulfilled') {
        if (r.value) subs.push(r.value);
      } else failure ??= r.reason;
    }
    if (failure !== undefined) {
      await Promise.allSettled(subs.map((s) => s.close()));
      throw failure;
    }
    this.memoryDeviceEvents = settled[4]?.status === 'fulfilled' && settled[4].value !== undefined;
    this.subs = subs;
    return settled.length;
  }

  /** Deregister on the daemon (when the connection is still there). */
  async close(): Promise<void> {
    const subs = this.subs;
    this.subs = [];
    this.client = undefined;
    this.registering = undefined;
    await Promise.allSettled(subs.map((s) => s.close()));
  }
}

/** The DriverEvent of a libvirt domain event. */
export function driverEventOf(ev: DomainEvent): DriverEvent {
  const vm = { name: ev.dom.name, uuid: ev.dom.uuid };
  switch (ev.kind) {
    case 'lifecycle':
      return ev.event === LifecycleEventType.DEFINED || ev.event === LifecycleEventType.UNDEFINED
        ? { kind: 'config', vm, detail: `${ev.eventName}(${ev.detail})` }
        : { kind: 'lifecycle', vm, detail: `${ev.eventName}(${ev.detail})` };
    case 'balloonChange':
      return { kind: 'balloon', vm, actual: BigInt(ev.actualKiB) * KIB };
    case 'deviceAdded':
      return { kind: 'config', vm, detail: `device-added(${ev.devAlias})` };
    case 'deviceRemoved':
      return { kind: 'config', vm, detail: `device-removed(${ev.devAlias})` };
    case 'memoryDeviceSizeChange':
      return { kind: 'memoryDevice', vm, alias: ev.alias, size: BigInt(ev.sizeKiB) * KIB };
  }
}

/** Lifecycle events after which a domain's XML may differ (DEFINED, UNDEFINED, STARTED, STOPPED). */
export function changesDefinition(ev: DomainEvent): boolean {
  switch (ev.kind) {
    case 'lifecycle':
      return (
        ev.event === LifecycleEventType.DEFINED ||
        ev.event === LifecycleEventType.UNDEFINED ||
        ev.event === LifecycleEventType.STARTED ||
        ev.event === LifecycleEventType.STOPPED ||
        ev.event === LifecycleEventType.CRASHED
      );
    case 'balloonChange':
      return false;
    case 'deviceAdded':
    case 'deviceRemoved':
    case 'memoryDeviceSizeChange':
      return true;
  }
}
