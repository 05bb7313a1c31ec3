/** Calls to the backend. Every failure becomes an `ApiError` whose message a person can act on. */

export interface Health {
  readonly status: string;
  readonly environment: string;
}

export type Me = Readonly<Record<string, unknown>>;

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export const REQUEST_TIMEOUT_MS = 10_000;

export type ApiErrorKind = "network" | "http" | "timeout" | "invalid-response";

export class ApiError extends Error {
  readonly kind: ApiErrorKind;
  readonly status: number | undefined;

  constructor(kind: ApiErrorKind, message: string, status?: number) {
    super(message);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
  }
}

export function endpoint(apiUrl: string, path: string): string {
  return `${apiUrl}${path}`;
}

function describeTarget(url: string): string {
  return url.startsWith("/") ? `${url} on this site` : url;
}

/** FastAPI puts its reason in `detail` (a string, or a list of validation errors). */
async function reasonFrom(response: Response): Promise<string> {
  const text = await response.text().catch(() => "");
  try {
    const body: unknown = JSON.parse(text);
    if (body && typeof body === "object") {
      const detail = (body as Record<string, unknown>).detail ?? (body as Record<string, unknown>).error;
      if (typeof detail === "string") {
        return detail;
      }
      if (detail !== undefined) {
        return JSON.stringify(detail);
      }
    }
  } catch {
    // Not JSON: a proxy or load balancer error page; show its start below.
  }
  return text.trim().slice(0, 200);
}

export async function getJson(url: string, fetchImpl: FetchLike, headers: Record<string, string> = {}): Promise<unknown> {
  let response: Response;
  try {
    response = await fetchImpl(url, {
      headers: { Accept: "application/json", ...headers },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    if (error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError")) {
      throw new ApiError("timeout", `${describeTarget(url)} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
    }
    // Browsers report a refused CORS preflight, a missing Access-Control-Allow-Origin, DNS failures and
    // refused connections all as the same TypeError ("Failed to fetch"); the cause is only in the console.
    const detail = error instanceof Error ? error.message : String(error);
    throw new ApiError(
      "network",
      `Could not reach ${describeTarget(url)}: the network failed or the API does not allow this page's origin (CORS). Browser said: ${detail}`,
    );
  }
  if (!response.ok) {
    const reason = await reasonFrom(response);
    const statusText = response.statusText ? ` ${response.statusText}` : "";
    throw new ApiError(
      "http",
      `${describeTarget(url)} answered ${response.status}${statusText}${reason ? `: ${reason}` : ""}`,
      response.status,
    );
  }
  try {
    return (await response.json()) as unknown;
  } catch {
    throw new ApiError("invalid-response", `${describeTarget(url)} answered ${response.status} but not with JSON`, response.status);
  }
}

export async function fetchHealth(apiUrl: string, fetchImpl: FetchLike): Promise<Health> {
  const url = endpoint(apiUrl, "/api/health");
  const body = await getJson(url, fetchImpl);
  if (!body || typeof body !== "object") {
    throw new ApiError("invalid-response", `${describeTarget(url)} answered with ${JSON.stringify(body)}, not an object`);
  }
  const { status, environment } = body as Record<string, unknown>;
  if (typeof status !== "string" || typeof environment !== "string") {
    throw new ApiError(
      "invalid-response",
      `${describeTarget(url)} answered ${JSON.stringify(body)}; expected {"status": ..., "environment": ...}`,
    );
  }
  return { status, environment };
}

export async function fetchMe(apiUrl: string, token: string, fetchImpl: FetchLike): Promise<Me> {
  const url = endpoint(apiUrl, "/api/v1/me");
  const body = await getJson(url, fetchImpl, { Authorization: `Bearer ${token}` });
  if (!body || typeof body !== "object" || Array.isArray(body)) {
    throw new ApiError("invalid-response", `${describeTarget(url)} answered with ${JSON.stringify(body)}, not an object`);
  }
  return body as Me;
}
