// Fails when src/contract/openapi.ts is not what openapi-typescript makes of
// gateway-config/openapi.yaml today: the request types must follow the gateway.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "qbill-contract-"));
try {
  const fresh = join(dir, "openapi.ts");
  execFileSync("npx", ["openapi-typescript", "../gateway-config/openapi.yaml", "--output", fresh], { stdio: "pipe" });
  if (readFileSync(fresh, "utf8") !== readFileSync("src/contract/openapi.ts", "utf8")) {
    console.error("web/src/contract/openapi.ts is stale: run `npm run contract` in web/ and commit it.");
    process.exit(1);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
