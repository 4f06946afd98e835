/**
 * The package version, reported to the engine as `version`. A constant rather than a read of package.json at run time
 * (which moves with bundling and install layouts); test/version.test.ts keeps it equal to package.json's.
 *
 * @internal
 */
export const version = "0.1.0"
