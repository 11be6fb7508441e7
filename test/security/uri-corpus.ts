/**
 * Hypervisor URIs an attacker would write, by class (issue #12 item 1), and URIs that must keep
 * working. Shared by the security tests: each class is refused by `vmmem validate`, by the real
 * kube-apiserver, and by the transport, and the good ones are accepted by all three.
 */

export const MARKER_TOKEN = 'VMMEM_PWNED';

export interface HostileUri {
  uri: string;
  /** What the refusal must say (zod and parseUri; the API server says the CEL message). */
  says: RegExp;
  /** Whether it is a libvirt URI (parseUri must refuse it too). */
  libvirt: boolean;
}

/** `marker` is a path the command would create if it ever ran. */
export function hostileUris(marker: string): Record<string, HostileUri[]> {
  const touch = `touch%20${marker}`;
  return {
    'a program to run (command=)': [
      { uri: `qemu+ssh://-c@host/system?command=/bin/sh&keyfile=${touch}`, says: /program|begin with '-'|invalid user/, libvirt: true },
      { uri: 'qemu+ssh://root@host/system?command=/bin/sh', says: /program|command= is refused/, libvirt: true },
      { uri: 'qemu+ssh://root@host/system?%63ommand=/bin/sh', says: /not a supported URI|'%63ommand' is not supported/, libvirt: true },
    ],
    'a remote command (netcat=)': [{ uri: `qemu+ssh://root@host/system?netcat=${touch}`, says: /program|netcat= is refused/, libvirt: true }],
    'a local file (keyfile=, pkipath=, known_hosts=)': [
      { uri: 'qemu+ssh://root@host/system?keyfile=/var/run/secrets/kubernetes.io/serviceaccount/token', says: /local file|keyfile= is refused/, libvirt: true },
      { uri: 'qemu+tls://host/system?pkipath=/etc/pki', says: /local file|pkipath= is refused/, libvirt: true },
      { uri: 'qemu+ssh://root@host/system?known_hosts=/etc/passwd', says: /local file|known_hosts= is refused/, libvirt: true },
    ],
    'an ssh option (user or host starting with -)': [
      { uri: 'qemu+ssh://-oProxyCommand=sh@host/system', says: /begin with '-'|invalid user/, libvirt: true },
      { uri: `qemu+ssh://-oProxyCommand=${touch}/system`, says: /begin with '-'|invalid host/, libvirt: true },
      { uri: 'qemu+ssh://root@host/system?sshauth=agent', says: /ssh option|sshauth= is refused/, libvirt: true },
    ],
    'no_verify= (use spec.tls.insecureSkipVerify)': [{ uri: 'qemu+tls://host/system?no_verify=1', says: /spec\.tls\.insecureSkipVerify/, libvirt: true }],
    'credentials in the URI (use credentialsSecretRef)': [
      { uri: 'https://administrator:hunter2-secret@vcenter.example.com/sdk', says: /credentialsSecretRef/, libvirt: false },
      { uri: 'https://administrator@vcenter.example.com/sdk', says: /credentialsSecretRef/, libvirt: false },
      { uri: 'qemu+ssh://root:hunter2-secret@host/system', says: /credentials/, libvirt: true },
    ],
    'a parameter vmmem does not support': [
      { uri: 'qemu:///system?name=test:///etc/passwd', says: /name|not a supported URI/, libvirt: true },
      { uri: 'test+unix:///etc/passwd', says: /not a supported URI|must be \/default/, libvirt: true },
      { uri: 'qemu+tcp://host/system?socket=/tmp/x', says: /not a supported URI|not supported for the tcp transport/, libvirt: true },
      { uri: 'qemu:///system?socket=/var/run/../../etc/x', says: /not a supported URI|invalid socket/, libvirt: true },
      { uri: 'qemu:///system?mode=direct&mode=legacy', says: /twice/, libvirt: true },
      { uri: 'https://vcenter.example.com/sdk?x=1', says: /not a supported URI/, libvirt: false },
      { uri: 'lxc:///system', says: /not a supported URI|unsupported hypervisor driver/, libvirt: true },
    ],
  };
}

/** URIs that keep working (the tests, the docs' examples). */
export const GOOD_URIS = [
  'qemu:///system',
  'qemu:///session',
  'qemu+unix:///system?socket=/var/run/libvirt/libvirt-sock',
  'test+unix:///default?socket=/tmp/vmmem-lv-x1/run/libvirt-sock&mode=legacy',
  'xen:///system',
  'qemu+tls://hv1.example.com/system',
  'qemu://hv1/system',
  'qemu+tcp://10.0.0.5:16509/system',
  'qemu+tls://[fd00::1]:16514/system',
  'qemu+ssh://root@hv2:2222/system?socket=/var/run/libvirt/virtqemud-sock&proxy=netcat',
  'xen+ssh://admin@dom0/system',
  'https://vcenter.example.com/sdk',
  'https://127.0.0.1:8989/sdk',
  'sim:///examples/sim/kvm.yaml',
  'sim:memory:e2e',
];
