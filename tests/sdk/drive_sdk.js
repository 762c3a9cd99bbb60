// Drives Autodesk's official APS Node SDK, unmodified, against a base URL (the emulator in the tests).
//
// Usage: node drive_sdk.js <input.json>; prints one JSON object with what the SDK saw.
// Input: {baseUrl, clientId, clientSecret, bucketKey, objectKey, filePath,
//         theirs: {bucketKey, objectKey, urn}}   (an object and a translation our own client made)
// Only the SDK's public clients are used: AuthenticationClient, OssClient (its uploadObject helper does
// the multipart signed-S3 upload) and ModelDerivativeClient. The only setting changed is the base address.
"use strict";

const fs = require("fs");
const { SdkManagerBuilder } = require("@aps_sdk/autodesk-sdkmanager");
const { AuthenticationClient, Scopes } = require("@aps_sdk/authentication");
const { OssClient, Region, PolicyKey } = require("@aps_sdk/oss");
const { ModelDerivativeClient } = require("@aps_sdk/model-derivative");

const FINISHED = new Set(["success", "failed", "timeout"]);
const POLL_LIMIT_MS = 60000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function pollUntil(what, read, done) {
  const deadline = Date.now() + POLL_LIMIT_MS;
  let calls = 0;
  for (;;) {
    const value = await read();
    calls += 1;
    if (done(value)) return { value, calls };
    if (Date.now() > deadline) throw new Error(`${what}: not finished after ${calls} polls`);
    await sleep(200);
  }
}

async function main() {
  const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const sdkManager = SdkManagerBuilder.create().build();
  sdkManager.apsConfiguration.BaseAddress = new URL(input.baseUrl);
  sdkManager.toggleLogging(false);

  const auth = new AuthenticationClient({ sdkManager });
  const oss = new OssClient({ sdkManager });
  const md = new ModelDerivativeClient({ sdkManager });
  const out = {};

  const token = await auth.getTwoLeggedToken(input.clientId, input.clientSecret, [
    Scopes.DataRead, Scopes.DataWrite, Scopes.DataCreate, Scopes.BucketCreate, Scopes.BucketRead,
  ]);
  out.token = { token_type: token.token_type, expires_in: token.expires_in,
                has_access_token: typeof token.access_token === "string" && token.access_token.length > 0 };
  const accessToken = token.access_token;

  const created = await oss.createBucket(Region.Us, { bucketKey: input.bucketKey, policyKey: PolicyKey.Transient },
                                         { accessToken });
  out.bucketCreated = created;
  out.bucketDetails = await oss.getBucketDetails(input.bucketKey, { accessToken });

  const progress = [];
  const uploaded = await oss.uploadObject(input.bucketKey, input.objectKey, input.filePath, {
    accessToken, onProgress: (percent) => progress.push(percent),
  });
  out.uploaded = uploaded;
  out.uploadProgress = progress;

  const urn = Buffer.from(uploaded.objectId).toString("base64url");
  out.urn = urn;
  out.job = await md.startJob({
    input: { urn },
    output: { formats: [{ type: "svf2", views: ["2d", "3d"] }, { type: "thumbnail" }] },
  }, { accessToken });

  const manifest = await pollUntil("manifest", () => md.getManifest(urn, { accessToken }),
                                   (m) => FINISHED.has(m.status));
  out.manifest = manifest.value;
  out.manifestPolls = manifest.calls;

  const views = await md.getModelViews(urn, { accessToken });
  out.views = views;
  const guid = views.data.metadata.find((view) => view.role === "3d").guid;
  const properties = await pollUntil("properties", () => md.getAllProperties(urn, guid, { accessToken }),
                                     (p) => !p.isProcessing);
  out.properties = properties.value;
  out.propertiesPolls = properties.calls;
  const tree = await pollUntil("tree", () => md.getObjectTree(urn, guid, { accessToken }),
                               (t) => !t.isProcessing);
  out.tree = tree.value;

  // The generated code leaves the response type to axios (JSON); ask for bytes through the SDK's own
  // per-request options so the PNG arrives intact.
  const thumbnail = await md.getThumbnail(urn, { accessToken, width: 200, height: 200,
                                                 options: { responseType: "arraybuffer" } });
  const png = Buffer.from(thumbnail);
  out.thumbnail = { bytes: png.length, signature: png.subarray(0, 8).toString("hex") };

  // What our own client wrote, read by the SDK.
  const theirs = input.theirs;
  out.theirsObject = await oss.getObjectDetails(theirs.bucketKey, theirs.objectKey, { accessToken });
  out.theirsManifest = await md.getManifest(theirs.urn, { accessToken });
  return out;
}

main().then(
  (out) => process.stdout.write(JSON.stringify(out)),
  (error) => {
    const response = error && error.axiosError && error.axiosError.response;
    const detail = response ? ` (${response.config.method} ${response.config.url} -> ${response.status})` : "";
    process.stderr.write(`${error && error.stack ? error.stack : error}${detail}\n`);
    process.exit(1);
  },
);
