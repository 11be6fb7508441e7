// Secrets, read on demand with one GET (no cluster-wide Secret watch: least privilege, `get` only).
// Values are decoded to strings and never logged; errors name the Secret and the call only.
import * as k8s from '@kubernetes/client-node';
import type { ObjectKey } from '../controller/ports.ts';
import { KubeApiError, isNotFound } from './errors.ts';
import { requestOptions } from './http.ts';
import { describeKey } from './cache.ts';

export class SecretReader {
  private readonly core: k8s.CoreV1Api;
  private readonly timeoutMs: number;

  constructor(kubeConfig: k8s.KubeConfig, timeoutMs: number) {
    this.core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.timeoutMs = timeoutMs;
  }

  /** The Secret's data decoded to UTF-8; undefined when it (or its namespace) does not exist. */
  async get(key: ObjectKey): Promise<Record<string, string> | undefined> {
    let secret: k8s.V1Secret;
    try {
      secret = await this.core.readNamespacedSecret({ namespace: key.namespace, name: key.name }, requestOptions(this.timeoutMs));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new KubeApiError('get', describeKey('Secret', key), e);
    }
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
    return out;
  }
}
