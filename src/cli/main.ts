/**
 * `vmmem`: the composition root. Each subcommand lives in its own file;
 * this one only parses the command line and sets the exit code.
 */
import { parseArgs } from 'node:util';
import { processIO } from './io.ts';
import { validateCommand } from './validate.ts';

const USAGE = `vmmem — keeps virtual machines' memory where their owners declare it

Usage:
  vmmem validate -f <file|dir|->...          check manifests (exit 0 valid, 1 problems, 2 usage)
  vmmem plan -f <manifests>... [--hypervisor <uri>] [-o table|yaml|json]
                                              show what vmmem would do, changing nothing
  vmmem run [--kubeconfig <path>]             run the operator against a Kubernetes cluster
  vmmem run --manifests <dir> [--once] [-o yaml|json]
                                              standalone mode over a directory of manifests
  vmmem demo                                  standalone mode on the examples and the simulator
  vmmem version
`;

type Command = (args: string[]) => Promise<number> | number;

const commands: Record<string, Command> = {
  validate(args) {
    const { values } = parseArgs({ args, options: { file: { type: 'string', short: 'f', multiple: true } }, allowPositionals: false });
    return validateCommand(values.file ?? [], processIO);
  },
  async plan(args) {
    const { planCommand } = await import('./plan.ts');
    return planCommand(args, processIO);
  },
  async run(args) {
    const { runCommand } = await import('./run.ts');
    return runCommand(args, processIO);
  },
  async demo(args) {
    const { demoCommand } = await import('./demo.ts');
    return demoCommand(args, processIO);
  },
  version() {
    processIO.out('vmmem 0.1.0 (vmmem.io/v1alpha1)');
    return 0;
  },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    processIO.out(USAGE);
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    processIO.err(`vmmem: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command(rest);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code?.startsWith('ERR_PARSE_ARGS')) {
      processIO.err(`vmmem ${name}: ${e.message}`);
      return 2;
    }
    processIO.err(`vmmem ${name}: ${e.message ?? String(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
