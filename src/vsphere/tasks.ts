// Tasks: a `*_Task` method returns a Task at once; the outcome is its `info.state`/`info.error`,
// polled here (25 ms doubling to 1 s) until it ends or the deadline passes.
import { setTimeout as sleep } from 'node:timers/promises';
import { VSphereFault, VSphereProtocolError, VSphereTimeoutError } from './errors.ts';
import { retrieveProperties } from './properties.ts';
import type { Session } from './session.ts';
import type { MoRef } from './soap.ts';
import { decodeLocalizedFault, parseMoRef } from './soap.ts';
import type { Child } from './xml.ts';
import { child } from './xml.ts';

export interface TaskWait {
  timeoutMs: number;
  method: string;
}

/** One look at a task: true when it succeeded, false while queued/running; throws its fault. */
async function taskDone(s: Session, pageSize: number, task: MoRef, method: string): Promise<{ done: boolean; state: string }> {
  const [o] = await retrieveProperties(s, pageSize, [task], ['info.state', 'info.error']);
  const state = o?.props.get('info.state')?.text;
  if (state === 'success') return { done: true, state };
  if (state === 'error') {
    const err = o?.props.get('info.error');
    if (!err) throw new VSphereFault({ method, faultName: 'MethodFault', faultString: 'task failed without error info', task: task.value });
    throw decodeLocalizedFault(method, err, task.value);
  }
  if (state !== 'queued' && state !== 'running') {
    throw new VSphereProtocolError(`${method}: task ${task.value} has unknown state ${JSON.stringify(state)}`, method);
  }
  return { done: false, state };
}

/**
 * Waits for a task to finish. Resolves on success; throws the task's fault as a VSphereFault;
 * VSphereTimeoutError past the deadline.
 */
export async function waitForTask(s: Session, pageSize: number, task: MoRef, w: TaskWait): Promise<void> {
  const deadline = Date.now() + w.timeoutMs;
  let delay = 25;
  for (;;) {
    const { done, state } = await taskDone(s, pageSize, task, w.method);
    if (done) return;
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new VSphereTimeoutError(`${w.method}: task ${task.value} still ${state} after ${w.timeoutMs} ms`, w.method, w.timeoutMs);
    }
    await sleep(Math.min(delay, left));
    delay = Math.min(delay * 2, 1000);
  }
}

/** Calls a `*_Task` method and waits for its task. */
export async function runTask(s: Session, pageSize: number, method: string, self: MoRef, params: Child[], timeoutMs: number): Promise<void> {
  const task = await s.call(method, self, params, (res) => parseMoRef(child(res, 'returnval'), method));
  await waitForTask(s, pageSize, task, { method, timeoutMs });
}
