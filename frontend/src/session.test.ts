import { beforeEach, describe, expect, it } from "vitest";
import { PASTED_TOKEN_KEY, browserTokenStore } from "./session";

describe("browserTokenStore", () => {
  beforeEach(() => {
    sessionStorage.clear();
    localStorage.clear();
  });
  const now = () => 1_000;

  it("has no token by default", () => {
    expect(browserTokenStore(sessionStorage, localStorage, now).read()).toBeNull();
  });

  it("keeps a pasted token for this tab only and forgets it on clear", () => {
    const store = browserTokenStore(sessionStorage, localStorage, now);
    store.save("pasted");
    expect(sessionStorage.getItem(PASTED_TOKEN_KEY)).toBe("pasted");
    expect(localStorage.length).toBe(0);
    expect(store.read()).toBe("pasted");
    store.clear();
    expect(store.read()).toBeNull();
  });

  it("uses a supabase-js session stored on this origin while it has not expired", () => {
    localStorage.setItem("unrelated", "{}");
    localStorage.setItem("sb-abcdefgh-auth-token", JSON.stringify({ access_token: "from-supabase", expires_at: 2_000 }));
    expect(browserTokenStore(sessionStorage, localStorage, now).read()).toBe("from-supabase");
    expect(browserTokenStore(sessionStorage, localStorage, () => 2_000).read()).toBeNull();
  });

  it("prefers the pasted token and ignores a malformed session", () => {
    localStorage.setItem("sb-abcdefgh-auth-token", "not json");
    const store = browserTokenStore(sessionStorage, localStorage, now);
    expect(store.read()).toBeNull();
    store.save("pasted");
    expect(store.read()).toBe("pasted");
  });
});
