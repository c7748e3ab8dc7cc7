// pagefuse status — placeholder until the Ksm class lands.
export async function run(_args: string[]): Promise<number> {
  process.stdout.write('pagefuse status: not built yet\n');
  return 1;
}
