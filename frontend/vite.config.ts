import react from "@vitejs/plugin-react";
import { loadEnv } from "vite";
import { defineConfig } from "vitest/config";

export default defineConfig(({ command, mode }) => {
  // A production build without VITE_API_URL would call the wrong API; "" (same origin) is a valid value.
  if (command === "build" && loadEnv(mode, process.cwd(), "VITE_").VITE_API_URL === undefined) {
    console.error('error: VITE_API_URL is not set: build with `make frontend STAGE=<stage>` (or set VITE_API_URL, "" for same origin)');
    process.exit(2);
  }
  return {
    plugins: [react()],
    build: { sourcemap: false, reportCompressedSize: false },
    test: {
      environment: "jsdom",
      include: ["src/**/*.test.{ts,tsx}"],
    },
  };
});
