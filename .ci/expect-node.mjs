// Fails unless this is the Node major version given: so a CI step meant for
// Node 24 cannot pass while quietly running on another node from PATH.
const want = process.argv[2];
const major = process.versions.node.split('.')[0];
if (major !== want) {
  console.error(`expected Node ${want}, running ${process.version} (${process.execPath})`);
  process.exit(1);
}
console.log(`Node ${process.version} (${process.execPath})`);
