// A planted fleet for tests and benches: VMs whose memory is built in layers (a shared OS image,
// an OS version, an application) plus pages of their own, so which VMs share what is known exactly.
// Families are the (os, version, app) triples; a family's VMs share all three layers.

export interface PlantedLayers {
  oses: number;
  versionsPerOs: number;
  appsPerVersion: number;
  /** Pages of each layer, and of each VM's own content. */
  osPages: number;
  versionPages: number;
  appPages: number;
  ownPages: number;
}

export interface PlantedVm {
  family: number;
  os: number;
  version: number;
  app: number;
  /** The shared layers (OS, version, application): same seed, same pages, in every VM that has it. */
  layers: { seed: number; pages: number }[];
  /** Seed of the VM's own pages (distinct per VM). */
  ownSeed: number;
  ownPages: number;
}

export function families(l: PlantedLayers): number {
  return l.oses * l.versionsPerOs * l.appsPerVersion;
}

/** The layers of a VM of family f, the `index`-th of its family. */
export function plantedVm(l: PlantedLayers, f: number, index: number): PlantedVm {
  const app = f % l.appsPerVersion;
  const version = Math.floor(f / l.appsPerVersion) % l.versionsPerOs;
  const os = Math.floor(f / (l.appsPerVersion * l.versionsPerOs));
  const v = os * l.versionsPerOs + version;
  return {
    family: f,
    os,
    version,
    app,
    layers: [
      { seed: 1_000 + os, pages: l.osPages },
      { seed: 2_000 + v, pages: l.versionPages },
      { seed: 3_000 + f, pages: l.appPages },
    ],
    ownSeed: 1_000_000 + f * 1_000 + index,
    ownPages: l.ownPages,
  };
}
