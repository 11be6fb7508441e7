import type { CommandIO } from './io.ts';
export async function planCommand(_args: string[], _io: CommandIO): Promise<number> {
  return 0;
}
