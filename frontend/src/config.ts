/** What a build knows about its stage: both values are baked in at build time by Vite (R8.1, R3.5). */
export interface AppConfig {
  /** Base URL of the API without a trailing slash; "" means the page's own origin (`/api/*`). */
  readonly apiUrl: string;
  readonly stage: string;
}

export class ConfigError extends Error {}

interface BuildEnv {
  readonly VITE_API_URL?: string;
  readonly VITE_STAGE?: string;
}

/**
 * Reads the build's environment. The API URL comes only from VITE_API_URL: "" keeps requests on the
 * page's origin (beta and gamma, where CloudFront sends `/api/*` to the ALB); anything else must be an
 * absolute http(s) URL with no path, query or fragment, so `${apiUrl}/api/health` is always right.
 */
export function readConfig(env: BuildEnv): AppConfig {
  const raw = env.VITE_API_URL;
  if (raw === undefined) {
    throw new ConfigError("VITE_API_URL was not set when this frontend was built: rebuild with `make frontend STAGE=<stage>`");
  }
  const stage = env.VITE_STAGE?.trim() || "unknown";
  const trimmed = raw.trim();
  if (trimmed === "") {
    return { apiUrl: "", stage };
  }
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new ConfigError(`VITE_API_URL=${JSON.stringify(raw)} is not a URL: use "" (same origin) or e.g. https://api.example.com`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError(`VITE_API_URL=${JSON.stringify(raw)} must be http(s)`);
  }
  if (url.pathname !== "/" || url.search !== "" || url.hash !== "") {
    throw new ConfigError(`VITE_API_URL=${JSON.stringify(raw)} must be an origin without a path, query or fragment`);
  }
  return { apiUrl: url.origin, stage };
}
