// The PropertyCollector's retrieve side: RetrievePropertiesEx in pages of maxObjects, following
// ContinueRetrievePropertiesEx tokens, so no single answer grows with the inventory (the
// transport caps each body; DEFAULT_MAX_RESPONSE_BYTES), and ContainerViews over the inventory.
import { VSphereError, VSphereProtocolError } from './errors.ts';
import { parseRetrieveResult } from './decode.ts';
import type { Session } from './session.ts';
import type { MoRef } from './soap.ts';
import { parseMoRef } from './soap.ts';
import { containerViewObjectSpecXml, objectSpecXml, propertyFilterSpecXml } from './specs.ts';
import type { ObjectContent } from './types.ts';
import type { Raw } from './xml.ts';
import { child, el, moRef } from './xml.ts';

/** Continuation pages followed at most (a server that never ends its token chain is refused). */
const MAX_PAGES = 10_000;

/** RetrievePropertiesEx over the given objectSets, following continuation tokens. */
export async function retrieve(
  s: Session,
  pageSize: number,
  type: string,
  paths: readonly string[],
  objectSets: Raw[],
): Promise<ObjectContent[]> {
  const pc = (await s.content()).propertyCollector;
  const method = 'RetrievePropertiesEx';
  const first = await s.call(
    method,
    pc,
    [propertyFilterSpecXml(type, paths, objectSets), el('options', null, el('maxObjects', null, pageSize))],
    (res) => parseRetrieveResult(method, child(res, 'returnval')),
  );
  const all = [...first.objects];
  let token = first.token;
  for (let i = 0; token !== undefined; i++) {
    if (i > MAX_PAGES) throw new VSphereProtocolError(`${method}: too many continuation pages`, method);
    const m2 = 'ContinueRetrievePropertiesEx';
    const page = await s.call(m2, pc, [el('token', null, token)], (res) => parseRetrieveResult(m2, child(res, 'returnval')));
    all.push(...page.objects);
    token = page.token;
  }
  return all;
}

/** Reads `paths` of each object (all of one type). Unknown objects give ManagedObjectNotFound. */
export async function retrieveProperties(s: Session, pageSize: number, objs: MoRef[], paths: readonly string[]): Promise<ObjectContent[]> {
  if (objs.length === 0) return [];
  return await retrieve(s, pageSize, objs[0]!.type, paths, objs.map(objectSpecXml));
}

/** ViewManager.CreateContainerView of every `type` under the root folder, recursively. */
export async function createContainerView(s: Session, type: string): Promise<MoRef> {
  const sc = await s.content();
  if (!sc.viewManager) throw new VSphereError('this server has no ViewManager', 'CreateContainerView');
  return await s.call(
    'CreateContainerView',
    sc.viewManager,
    [moRef('container', sc.rootFolder), el('type', null, type), el('recursive', null, true)],
    (res) => parseMoRef(child(res, 'returnval'), 'CreateContainerView'),
  );
}

/** Destroys a server-side object (view, collector) without failing: one left behind dies with the session. */
export async function destroyQuietly(s: Session, method: 'DestroyView' | 'DestroyPropertyCollector', ref: MoRef): Promise<void> {
  try {
    await s.callOnce(method, ref, [], () => undefined, 5000);
  } catch {
    // gone with the session anyway
  }
}

/** A private PropertyCollector with one filter over a ContainerView: what a watch or a kept copy polls. */
export interface ViewFilter {
  collector: MoRef;
  view: MoRef;
}

/**
 * A private collector (so cancelling our wait touches no one else's), a ContainerView of every
 * `type`, and one filter for `paths` of its objects. What it created before a failure is destroyed.
 */
export async function createViewFilter(s: Session, type: string, paths: readonly string[]): Promise<ViewFilter> {
  const sc = await s.content();
  if (!sc.viewManager) throw new VSphereError('this server has no ViewManager', 'CreateContainerView');
  const collector = await s.call('CreatePropertyCollector', sc.propertyCollector, [], (res) =>
    parseMoRef(child(res, 'returnval'), 'CreatePropertyCollector'),
  );
  let view: MoRef | undefined;
  try {
    view = await createContainerView(s, type);
    const spec = propertyFilterSpecXml(type, paths, [containerViewObjectSpecXml(view)], 'spec');
    await s.call('CreateFilter', collector, [spec, el('partialUpdates', null, false)], () => undefined);
    return { collector, view };
  } catch (e) {
    await destroyViewFilter(s, collector, view);
    throw e;
  }
}

/** Destroys a collector and its view, best effort (both die with the session anyway). */
export async function destroyViewFilter(s: Session, collector: MoRef | undefined, view: MoRef | undefined): Promise<void> {
  if (collector) await destroyQuietly(s, 'DestroyPropertyCollector', collector);
  if (view) await destroyQuietly(s, 'DestroyView', view);
}

/** Every object of `type` under the root folder, with `paths`, through a ContainerView (destroyed after). */
export async function listObjects(s: Session, pageSize: number, type: string, paths: readonly string[]): Promise<ObjectContent[]> {
  const view = await createContainerView(s, type);
  try {
    return await retrieve(s, pageSize, type, paths, [containerViewObjectSpecXml(view)]);
  } finally {
    await destroyQuietly(s, 'DestroyView', view);
  }
}
