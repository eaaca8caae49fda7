// A Node.js client of the suite: loads the .proto files from protos/ (no generated code; the google/api
// annotations they import from gen/third_party, where `make gen` copies them) and calls the
// gateway. Usage: node client.js <gateway address> <customer number> <token>
// Prints one JSON line: the connection types it listed and the status of a forbidden call.
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [address, customer, token] = process.argv.slice(2);
const root = path.resolve(__dirname, "../../../protos");
const thirdParty = path.resolve(__dirname, "../../../gen/third_party");
const definition = loader.loadSync(
  ["remotesupport/connections/v1/connections.proto", "remotesupport/authz/v1/authz.proto"],
  { includeDirs: [root, thirdParty], keepCase: true, longs: String, enums: String, defaults: true });
const api = grpc.loadPackageDefinition(definition).remotesupport;
const connections = new api.connections.v1.ConnectionsService(address, grpc.credentials.createInsecure());

const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${token}`);
const deadline = () => new Date(Date.now() + 10000);

connections.ListConnectionTypes({ category: "CONNECTION_CATEGORY_SAP_GUI" }, metadata, { deadline: deadline() },
  (err, response) => {
    if (err) { console.error(JSON.stringify({ error: err.code, details: err.details })); process.exit(1); }
    connections.ListSystems({ parent: `customers/${customer}` }, new grpc.Metadata(), { deadline: deadline() },
      (denied) => {
        console.log(JSON.stringify({
          types: response.connection_types.map((t) => [t.code, t.display_name, t.sap_note]),
          unauthenticated_code: denied ? denied.code : 0,
        }));
        process.exit(0);
      });
  });
