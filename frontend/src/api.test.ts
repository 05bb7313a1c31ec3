// @vitest-environment node
import { describe, expect, it, vi } from "vitest";
import { ApiError, type FetchLike, fetchHealth, fetchMe } from "./api";

function answering(status: number, body: string, statusText = ""): FetchLike {
  return vi.fn<FetchLike>(async () => new Response(body, { status, statusText, headers: { "Content-Type": "application/json" } }));
}

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  const error: unknown = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe("fetchHealth", () => {
  it("calls <api>/api/health and returns status and environment", async () => {
    const fetchImpl = answering(200, JSON.stringify({ status: "ok", environment: "beta" }));
    await expect(fetchHealth("http://127.0.0.1:8000", fetchImpl)).resolves.toEqual({ status: "ok", environment: "beta" });
    expect(fetchImpl).toHaveBeenCalledWith("http://127.0.0.1:8000/api/health", expect.anything());
  });

  it("calls the page's own origin when the API URL is empty", async () => {
    const fetchImpl = answering(200, JSON.stringify({ status: "ok", environment: "gamma" }));
    await fetchHealth("", fetchImpl);
    expect(fetchImpl).toHaveBeenCalledWith("/api/health", expect.anything());
  });

  it("turns a browser network or CORS refusal into a message that names both causes", async () => {
    const fetchImpl: FetchLike = async () => {
      throw new TypeError("Failed to fetch");
    };
    const error = await failure(fetchHealth("http://127.0.0.1:9", fetchImpl));
    expect(error.kind).toBe("network");
    expect(error.message).toContain("Could not reach http://127.0.0.1:9/api/health");
    expect(error.message).toContain("CORS");
    expect(error.message).toContain("Failed to fetch");
  });

  it("reports the status and FastAPI's detail of an error answer", async () => {
    const error = await failure(fetchHealth("", answering(503, JSON.stringify({ detail: "database down" }), "Service Unavailable")));
    expect(error.kind).toBe("http");
    expect(error.status).toBe(503);
    expect(error.message).toBe("/api/health on this site answered 503 Service Unavailable: database down");
  });

  it("shows the start of a non-JSON error page (a load balancer's 502)", async () => {
    const error = await failure(fetchHealth("", answering(502, "<html>502 Bad Gateway</html>")));
    expect(error.message).toContain("answered 502: <html>502 Bad Gateway</html>");
  });

  it("refuses a 200 that is not the health JSON", async () => {
    const notJson = await failure(fetchHealth("", answering(200, "<!doctype html><title>SPA fallback</title>")));
    expect(notJson.kind).toBe("invalid-response");
    expect(notJson.message).toContain("not with JSON");
    const wrongShape = await failure(fetchHealth("", answering(200, JSON.stringify({ healthy: true }))));
    expect(wrongShape.message).toContain('expected {"status": ..., "environment": ...}');
  });

  it("gives up after the timeout with a message saying so", async () => {
    const fetchImpl: FetchLike = async () => {
      throw new DOMException("The operation timed out.", "TimeoutError");
    };
    const error = await failure(fetchHealth("https://api.canvalo.com", fetchImpl));
    expect(error.kind).toBe("timeout");
    expect(error.message).toBe("https://api.canvalo.com/api/health did not answer within 10 s");
  });
});

describe("fetchMe", () => {
  it("sends the token as a bearer token to <api>/api/v1/me", async () => {
    const fetchImpl = answering(200, JSON.stringify({ sub: "user-1", email: "a@example.com" }));
    await expect(fetchMe("https://api.canvalo.com", "token-123", fetchImpl)).resolves.toEqual({
      sub: "user-1",
      email: "a@example.com",
    });
    const [url, init] = vi.mocked(fetchImpl).mock.calls[0] ?? [];
    expect(url).toBe("https://api.canvalo.com/api/v1/me");
    expect(new Headers(init?.headers).get("Authorization")).toBe("Bearer token-123");
  });

  it("reports a rejected token with the backend's reason", async () => {
    const error = await failure(fetchMe("", "expired", answering(401, JSON.stringify({ detail: "token expired" }), "Unauthorized")));
    expect(error.status).toBe(401);
    expect(error.message).toBe("/api/v1/me on this site answered 401 Unauthorized: token expired");
  });
});
