// @vitest-environment node
import { describe, expect, it } from "vitest";
import { ConfigError, readConfig } from "./config";

describe("readConfig", () => {
  it("keeps same-origin requests when VITE_API_URL is empty (beta and gamma behind CloudFront)", () => {
    expect(readConfig({ VITE_API_URL: "", VITE_STAGE: "beta" })).toEqual({ apiUrl: "", stage: "beta" });
  });

  it("uses the stage's API origin and drops a trailing slash", () => {
    expect(readConfig({ VITE_API_URL: "https://api.canvalo.com/", VITE_STAGE: "prod" })).toEqual({
      apiUrl: "https://api.canvalo.com",
      stage: "prod",
    });
  });

  it("refuses a build that was made without VITE_API_URL", () => {
    expect(() => readConfig({ VITE_STAGE: "beta" })).toThrow(/VITE_API_URL was not set.*make frontend STAGE=/);
  });

  it.each([
    ["api.canvalo.com", /is not a URL/],
    ["ftp://api.canvalo.com", /must be http\(s\)/],
    ["https://api.canvalo.com/api", /without a path/],
  ])("refuses VITE_API_URL=%s with a message naming the value", (value, message) => {
    expect(() => readConfig({ VITE_API_URL: value })).toThrow(ConfigError);
    expect(() => readConfig({ VITE_API_URL: value })).toThrow(message);
  });

  it("names the stage unknown rather than showing nothing", () => {
    expect(readConfig({ VITE_API_URL: "" }).stage).toBe("unknown");
  });
});
