import { cleanup, render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { App } from "./App";
import type { FetchLike } from "./api";
import type { TokenStore } from "./session";

afterEach(cleanup);

function memoryTokens(initial: string | null = null): TokenStore {
  let token = initial;
  return { read: () => token, save: (next) => (token = next), clear: () => (token = null) };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** Answers like the backend: health always, /api/v1/me only with the expected bearer token. */
function backend(environment = "beta"): FetchLike {
  return vi.fn<FetchLike>(async (url, init) => {
    if (url.endsWith("/api/health")) return json(200, { status: "ok", environment });
    if (url.endsWith("/api/v1/me")) {
      const authorization = new Headers(init?.headers).get("Authorization");
      return authorization === "Bearer good-token"
        ? json(200, { sub: "user-1", email: "person@example.com", environment })
        : json(401, { detail: "invalid token" });
    }
    return json(404, { detail: "Not Found" });
  });
}

describe("App", () => {
  it("shows the stage, the API it calls and a healthy backend", async () => {
    const fetchImpl = backend("beta");
    render(<App config={{ apiUrl: "", stage: "beta" }} fetchImpl={fetchImpl} tokens={memoryTokens()} />);
    expect(screen.getByTestId("stage").textContent).toBe("beta");
    expect(screen.getByTestId("api-url").textContent).toBe("this site (/api/*)");
    expect(screen.getByTestId("health").dataset.state).toBe("checking");
    await waitFor(() => expect(screen.getByTestId("health").textContent).toBe("Healthy (environment: beta)"));
    expect(fetchImpl).toHaveBeenCalledWith("/api/health", expect.anything());
    expect(screen.getByTestId("me").dataset.state).toBe("signed-out");
    expect(vi.mocked(fetchImpl).mock.calls.some(([url]) => url.endsWith("/api/v1/me"))).toBe(false);
  });

  it("shows a network or CORS failure to the person as an alert", async () => {
    const fetchImpl: FetchLike = async () => {
      throw new TypeError("Failed to fetch");
    };
    render(<App config={{ apiUrl: "https://api.canvalo.com", stage: "prod" }} fetchImpl={fetchImpl} tokens={memoryTokens()} />);
    const alert = await screen.findByRole("alert");
    expect(alert.dataset.state).toBe("unhealthy");
    expect(alert.textContent).toMatch(/^Unavailable: Could not reach https:\/\/api\.canvalo\.com\/api\/health.*CORS.*Failed to fetch/);
  });

  it("treats a health answer other than ok as unhealthy", async () => {
    const fetchImpl: FetchLike = async () => json(200, { status: "degraded", environment: "gamma" });
    render(<App config={{ apiUrl: "", stage: "gamma" }} fetchImpl={fetchImpl} tokens={memoryTokens()} />);
    await waitFor(() => expect(screen.getByTestId("health").textContent).toBe('Unavailable: the API reports status "degraded"'));
  });

  it("checks again on request and shows the recovery", async () => {
    let calls = 0;
    const fetchImpl: FetchLike = async () => (++calls === 1 ? json(503, { detail: "starting" }) : json(200, { status: "ok", environment: "beta" }));
    render(<App config={{ apiUrl: "", stage: "beta" }} fetchImpl={fetchImpl} tokens={memoryTokens()} />);
    await waitFor(() => expect(screen.getByTestId("health").textContent).toContain("answered 503: starting"));
    screen.getByRole("button", { name: "Check again" }).click();
    await waitFor(() => expect(screen.getByTestId("health").dataset.state).toBe("healthy"));
  });

  it("calls /api/v1/me with a stored token and shows the account", async () => {
    const fetchImpl = backend("beta");
    render(<App config={{ apiUrl: "http://127.0.0.1:8000", stage: "beta" }} fetchImpl={fetchImpl} tokens={memoryTokens("good-token")} />);
    await waitFor(() => expect(screen.getByTestId("me").dataset.state).toBe("ok"));
    expect(screen.getByTestId("me").textContent).toContain('"email": "person@example.com"');
    const meCall = vi.mocked(fetchImpl).mock.calls.find(([url]) => url === "http://127.0.0.1:8000/api/v1/me");
    expect(new Headers(meCall?.[1]?.headers).get("Authorization")).toBe("Bearer good-token");
  });

  it("shows why the API refused a token, and forgets it on request", async () => {
    const tokens = memoryTokens("stale-token");
    render(<App config={{ apiUrl: "", stage: "beta" }} fetchImpl={backend()} tokens={tokens} />);
    await waitFor(() => expect(screen.getByTestId("me").dataset.state).toBe("error"));
    expect(screen.getByTestId("me").textContent).toBe(
      "Could not load your account: /api/v1/me on this site answered 401: invalid token",
    );
    screen.getByRole("button", { name: "Forget token" }).click();
    await waitFor(() => expect(screen.getByTestId("me").dataset.state).toBe("signed-out"));
    expect(tokens.read()).toBeNull();
  });
});
