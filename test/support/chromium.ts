import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Debian's `chromium` package (installed by .ci/install-packages.sh); playwright-core drives it over CDP. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Why browser tests cannot run here, or undefined when they can. */
export function chromiumUnavailableReason(): string | undefined {
  return existsSync(CHROMIUM_PATH) ? undefined : `${CHROMIUM_PATH} is absent (install Debian's chromium: bash .ci/install-packages.sh)`;
}

/** A headless Chromium that stays off the network except for what the page loads. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
