/** Where `sosctl cluster up` keeps a local cluster unless told (--dir): `$SOS_LOCAL_DIR` or this. */
export const DEFAULT_LOCAL_DIR = process.env.SOS_LOCAL_DIR ?? '/var/lib/serverlessos/local';
