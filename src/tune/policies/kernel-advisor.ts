// Hands ksmd's pace to the kernel's scan-time advisor (Linux 6.8+) with advisor_max_cpu from the budget,
// and keeps the adaptive policy's judgement of whether ksmd should run at all.
import { PagefuseError } from '../../errors.js';
import type { PolicyFn } from '../types.js';
import { gate, type AdaptiveConfig, type AdaptiveState } from './adaptive.js';

/** advisor_max_cpu is a percentage of one CPU: the budget times 100, within 1–100. */
export function advisorMaxCpu(cpuBudget: number): number {
  return Math.min(100, Math.max(1, Math.round(cpuBudget * 100)));
}

export const kernelAdvisor: PolicyFn<AdaptiveState, AdaptiveConfig> = (o, state, c) => {
  if (o.knobs.advisor_mode === undefined) {
    throw new PagefuseError('ENOTSUP', 'this kernel has no KSM scan-time advisor (/sys/kernel/mm/ksm/advisor_mode needs Linux 6.8+): use --policy adaptive');
  }
  const g = gate(o, state, c);
  if (!g.run) return { decision: { knobs: { run: 0 }, rescan: g.rescan }, reasons: g.reasons, nextState: g.nextState };
  const maxCpu = advisorMaxCpu(c.cpuBudget);
  g.reasons.push(`advisor_mode=scan-time with advisor_max_cpu=${maxCpu}%: the kernel paces ksmd`);
  return {
    decision: { knobs: { advisor_mode: 'scan-time', advisor_max_cpu: maxCpu, run: 1 }, rescan: g.rescan },
    reasons: g.reasons,
    nextState: g.nextState,
  };
};
